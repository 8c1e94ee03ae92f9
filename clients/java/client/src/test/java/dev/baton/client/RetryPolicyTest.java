package dev.baton.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Deadline;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The backoff arithmetic, with the randomness pinned. */
class RetryPolicyTest {
  private static BatonException error(String code) {
    return new BatonException(code, "x", List.of(), null);
  }

  @Test
  void backoffDoublesUpToTheCapWithJitterInTheUpperHalf() {
    RetryPolicy low = new RetryPolicy(10, Duration.ofMillis(100), Duration.ofMillis(1000), () -> 0.0);
    RetryPolicy high = new RetryPolicy(10, Duration.ofMillis(100), Duration.ofMillis(1000), () -> 1.0);
    assertEquals(Duration.ofMillis(50), low.backoff(1, null));
    assertEquals(Duration.ofMillis(100), high.backoff(1, null));
    assertEquals(Duration.ofMillis(200), low.backoff(3, null));
    assertEquals(Duration.ofMillis(400), high.backoff(3, null));
    assertEquals(Duration.ofMillis(500), low.backoff(30, null));
    assertEquals(Duration.ofMillis(1000), high.backoff(30, null));
  }

  @Test
  void theServerDelayIsAFloor() {
    RetryPolicy p = new RetryPolicy(10, Duration.ofMillis(100), Duration.ofMillis(1000), () -> 0.0);
    assertEquals(Duration.ofSeconds(2), p.backoff(1, Duration.ofSeconds(2)));
    assertEquals(Duration.ofMillis(50), p.backoff(1, Duration.ofMillis(10)));
  }

  @Test
  void onlyUnavailableAndResourceExhaustedAreRetried() {
    assertTrue(RetryPolicy.retryable(Status.Code.UNAVAILABLE, false, RetryPolicy.Safety.SAFE));
    assertTrue(RetryPolicy.retryable(Status.Code.RESOURCE_EXHAUSTED, false, RetryPolicy.Safety.UNSAFE));
    assertFalse(RetryPolicy.retryable(Status.Code.UNAVAILABLE, false, RetryPolicy.Safety.UNSAFE));
    assertTrue(RetryPolicy.retryable(Status.Code.UNAVAILABLE, true, RetryPolicy.Safety.UNSAFE));
    for (Status.Code c : List.of(Status.Code.NOT_FOUND, Status.Code.INVALID_ARGUMENT, Status.Code.DEADLINE_EXCEEDED,
        Status.Code.FAILED_PRECONDITION, Status.Code.CANCELLED, Status.Code.INTERNAL)) {
      assertFalse(RetryPolicy.retryable(c, true, RetryPolicy.Safety.SAFE), c.name());
    }
  }

  @Test
  void attemptsAndDeadlineStopRetrying() {
    RetryPolicy p = new RetryPolicy(3, Duration.ofMillis(100), Duration.ofMillis(1000), () -> 1.0);
    assertEquals(Duration.ofMillis(100), p.retryDelay(error("UNAVAILABLE"), 1, RetryPolicy.Safety.SAFE, null));
    assertEquals(Duration.ofMillis(200), p.retryDelay(error("UNAVAILABLE"), 2, RetryPolicy.Safety.SAFE, null));
    assertNull(p.retryDelay(error("UNAVAILABLE"), 3, RetryPolicy.Safety.SAFE, null), "attempts used up");
    assertNull(p.retryDelay(error("NOT_FOUND"), 1, RetryPolicy.Safety.SAFE, null));
    Deadline soon = Deadline.after(50, TimeUnit.MILLISECONDS);
    assertNull(p.retryDelay(error("UNAVAILABLE"), 1, RetryPolicy.Safety.SAFE, soon), "would wake after the deadline");
  }
}
