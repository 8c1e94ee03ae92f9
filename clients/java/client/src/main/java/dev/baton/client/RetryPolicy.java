package dev.baton.client;

import io.grpc.Deadline;
import io.grpc.Status;
import java.time.Duration;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.function.DoubleSupplier;

/**
 * When and how long to wait before trying a failed call again: exponential backoff with jitter,
 * never shorter than the server's {@code google.rpc.RetryInfo} delay, bounded by the number of
 * attempts and by the call's deadline.
 */
final class RetryPolicy {
  /** Whether a call may run twice without harm. */
  enum Safety {
    /**
     * Reads, streams, appends and creates carrying an idempotency key, and handoff transitions
     * (a repeat returns the handoff unchanged): a retry never writes twice.
     */
    SAFE,
    /**
     * Other writes: retried only when the server refused them (RESOURCE_EXHAUSTED, or an
     * UNAVAILABLE that carries RetryInfo), never after an answer was lost in transit.
     */
    UNSAFE
  }

  final int maxAttempts;
  final Duration initialBackoff;
  final Duration maxBackoff;
  private final DoubleSupplier random;

  RetryPolicy(int maxAttempts, Duration initialBackoff, Duration maxBackoff) {
    this(maxAttempts, initialBackoff, maxBackoff, () -> ThreadLocalRandom.current().nextDouble());
  }

  RetryPolicy(int maxAttempts, Duration initialBackoff, Duration maxBackoff, DoubleSupplier random) {
    if (maxAttempts < 1) {
      throw new IllegalArgumentException("maxAttempts must be at least 1, got " + maxAttempts);
    }
    if (initialBackoff.isNegative() || initialBackoff.isZero()) {
      throw new IllegalArgumentException("initialBackoff must be positive");
    }
    if (maxBackoff.compareTo(initialBackoff) < 0) {
      throw new IllegalArgumentException("maxBackoff must not be shorter than initialBackoff");
    }
    this.maxAttempts = maxAttempts;
    this.initialBackoff = initialBackoff;
    this.maxBackoff = maxBackoff;
    this.random = random;
  }

  /** Whether an error with this code may be retried for a call of this safety. */
  static boolean retryable(Status.Code code, boolean serverAskedToRetry, Safety safety) {
    switch (code) {
      case RESOURCE_EXHAUSTED:
        return true;
      case UNAVAILABLE:
        return safety == Safety.SAFE || serverAskedToRetry;
      default:
        return false;
    }
  }

  /**
   * The wait before attempt {@code failures + 1}: half of the exponential step plus a random part
   * of the other half (so concurrent clients spread out), and at least the server's delay (plus up
   * to a fifth of it, for the same reason).
   *
   * @param failures the attempts that failed so far (1 after the first failure)
   * @param serverDelay the RetryInfo delay, or null
   */
  Duration backoff(int failures, Duration serverDelay) {
    double step = initialBackoff.toNanos() * Math.pow(2, Math.max(0, failures - 1));
    step = Math.min(step, maxBackoff.toNanos());
    long wait = (long) (step / 2 + random.getAsDouble() * step / 2);
    if (serverDelay != null && !serverDelay.isNegative()) {
      long floor = (long) (serverDelay.toNanos() * (1 + 0.2 * random.getAsDouble()));
      wait = Math.max(wait, floor);
    }
    return Duration.ofNanos(wait);
  }

  /**
   * The wait before retrying a call that failed with {@code error}, or null when it must not be
   * retried: the code is not retryable for this call, the attempts are used up, or the wait would
   * end past the deadline.
   *
   * @param failures the attempts that failed so far, including this one
   * @param deadline the call's deadline, or null for none
   */
  Duration retryDelay(BatonException error, int failures, Safety safety, Deadline deadline) {
    Status.Code code;
    try {
      code = Status.Code.valueOf(error.code());
    } catch (IllegalArgumentException e) {
      return null;
    }
    if (!retryable(code, error.retryDelay().isPresent(), safety) || failures >= maxAttempts) {
      return null;
    }
    Duration wait = backoff(failures, error.retryDelay().orElse(null));
    if (deadline != null && deadline.timeRemaining(TimeUnit.NANOSECONDS) <= wait.toNanos()) {
      return null;
    }
    return wait;
  }
}
