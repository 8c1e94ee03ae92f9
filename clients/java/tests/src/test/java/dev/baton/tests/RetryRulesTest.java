package dev.baton.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.rpc.BadRequest;
import com.google.rpc.Code;
import com.google.rpc.RetryInfo;
import dev.baton.client.BatonClient;
import dev.baton.client.BatonException;
import dev.baton.v1.AppendEntriesRequest;
import dev.baton.v1.AppendEntriesResponse;
import dev.baton.v1.CloseSessionRequest;
import dev.baton.v1.ContextServiceGrpc;
import dev.baton.v1.CreateSessionRequest;
import dev.baton.v1.GetSessionRequest;
import dev.baton.v1.Session;
import io.grpc.Contexts;
import io.grpc.Grpc;
import io.grpc.InsecureServerCredentials;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The retry rules for answers batond gives only under load or outages (RESOURCE_EXHAUSTED,
 * UNAVAILABLE with RetryInfo), and the headers, checked against a scripted gRPC server that
 * answers each call with the next scripted failure, then succeeds.
 */
class RetryRulesTest {
  private final Deque<StatusRuntimeException> failures = new ArrayDeque<>();
  private final List<Long> callTimes = Collections.synchronizedList(new ArrayList<>());
  private final List<String> idempotencyKeys = Collections.synchronizedList(new ArrayList<>());
  private final List<Metadata> headers = Collections.synchronizedList(new ArrayList<>());
  private Server server;

  private final class Scripted extends ContextServiceGrpc.ContextServiceImplBase {
    private boolean failNext(StreamObserver<?> response) {
      callTimes.add(System.nanoTime());
      StatusRuntimeException next;
      synchronized (failures) {
        next = failures.poll();
      }
      if (next != null) {
        response.onError(next);
        return true;
      }
      return false;
    }

    @Override
    public void getSession(GetSessionRequest request, StreamObserver<Session> response) {
      if (!failNext(response)) {
        response.onNext(Session.newBuilder().setSessionKey(request.getSessionKey()).build());
        response.onCompleted();
      }
    }

    @Override
    public void createSession(CreateSessionRequest request, StreamObserver<Session> response) {
      idempotencyKeys.add(request.getIdempotencyKey());
      if (!failNext(response)) {
        response.onNext(Session.newBuilder().setSessionKey("created").build());
        response.onCompleted();
      }
    }

    @Override
    public void closeSession(CloseSessionRequest request, StreamObserver<Session> response) {
      if (!failNext(response)) {
        response.onNext(Session.newBuilder().setSessionKey("closed").build());
        response.onCompleted();
      }
    }

    @Override
    public void appendEntries(AppendEntriesRequest request, StreamObserver<AppendEntriesResponse> response) {
      idempotencyKeys.add(request.getIdempotencyKey());
      if (!failNext(response)) {
        response.onNext(AppendEntriesResponse.newBuilder().setFirstSeq(1).setLastSeq(1).build());
        response.onCompleted();
      }
    }
  }

  @BeforeEach
  void start() throws IOException {
    ServerInterceptor capture =
        new ServerInterceptor() {
          @Override
          public <Q, A> ServerCall.Listener<Q> interceptCall(
              ServerCall<Q, A> call, Metadata h, ServerCallHandler<Q, A> next) {
            headers.add(h);
            return Contexts.interceptCall(io.grpc.Context.current(), call, h, next);
          }
        };
    server =
        Grpc.newServerBuilderForPort(0, InsecureServerCredentials.create())
            .addService(ServerInterceptors.intercept(new Scripted(), capture))
            .build()
            .start();
  }

  @AfterEach
  void stop() throws InterruptedException {
    server.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
  }

  private BatonClient.Builder client() {
    return BatonClient.builder().target("127.0.0.1:" + server.getPort()).backoff(Duration.ofMillis(20), Duration.ofMillis(100));
  }

  private void script(StatusRuntimeException... errors) {
    synchronized (failures) {
      failures.addAll(List.of(errors));
    }
  }

  private static StatusRuntimeException error(Code code, Duration retryDelay) {
    com.google.rpc.Status.Builder s = com.google.rpc.Status.newBuilder().setCode(code.getNumber()).setMessage("scripted " + code);
    if (retryDelay != null) {
      s.addDetails(
          Any.pack(
              RetryInfo.newBuilder()
                  .setRetryDelay(com.google.protobuf.Duration.newBuilder().setNanos((int) retryDelay.toNanos()))
                  .build()));
    }
    return StatusProto.toStatusRuntimeException(s.build());
  }

  private static GetSessionRequest get() {
    return GetSessionRequest.newBuilder().setSessionKey("k").build();
  }

  @Test
  void retryInfoDelayIsHonoured() {
    script(error(Code.UNAVAILABLE, Duration.ofMillis(300)), error(Code.UNAVAILABLE, Duration.ofMillis(300)));
    try (BatonClient c = client().build()) {
      assertEquals("k", c.getSession(get()).getSessionKey());
    }
    assertEquals(3, callTimes.size());
    for (int i = 1; i < 3; i++) {
      long gap = TimeUnit.NANOSECONDS.toMillis(callTimes.get(i) - callTimes.get(i - 1));
      assertTrue(gap >= 290, "waited the server's 300 ms, not the 20 ms backoff: " + gap);
    }
  }

  @Test
  void resourceExhaustedAppendIsRetriedWithTheSameKey() {
    script(error(Code.RESOURCE_EXHAUSTED, null), error(Code.UNAVAILABLE, null));
    try (BatonClient c = client().build()) {
      c.appendEntries(AppendEntriesRequest.newBuilder().setSessionKey("k").build());
    }
    assertEquals(3, idempotencyKeys.size());
    assertFalse(idempotencyKeys.get(0).isEmpty());
    assertEquals(1, idempotencyKeys.stream().distinct().count(), "one key for every attempt: " + idempotencyKeys);
  }

  @Test
  void writesWithoutAKeyAreNotRetriedAfterABareUnavailable() {
    script(error(Code.UNAVAILABLE, null));
    try (BatonClient c = client().build()) {
      BatonException e = assertThrows(BatonException.class, () -> c.closeSession(CloseSessionRequest.getDefaultInstance()));
      assertEquals("UNAVAILABLE", e.code());
      assertEquals(1, callTimes.size());

      // ... but they are when the server asked for a retry (it refused the call).
      script(error(Code.UNAVAILABLE, Duration.ofMillis(10)));
      assertEquals("closed", c.closeSession(CloseSessionRequest.getDefaultInstance()).getSessionKey());
      assertEquals(3, callTimes.size());
    }
  }

  @Test
  void createsCarryAKeyAndAreRetriedAfterABareUnavailable() {
    script(error(Code.UNAVAILABLE, null));
    try (BatonClient c = client().build()) {
      assertEquals("created", c.createSession(CreateSessionRequest.getDefaultInstance()).getSessionKey());
      assertEquals(2, callTimes.size());
    }
    assertEquals(2, idempotencyKeys.size());
    assertFalse(idempotencyKeys.get(0).isEmpty());
    assertEquals(1, idempotencyKeys.stream().distinct().count(), "one key for every attempt: " + idempotencyKeys);
  }

  @Test
  void otherCodesAreNotRetriedAndCarryTheirDetails() {
    com.google.rpc.Status bad =
        com.google.rpc.Status.newBuilder()
            .setCode(Code.INVALID_ARGUMENT.getNumber())
            .setMessage("bad request")
            .addDetails(
                Any.pack(
                    BadRequest.newBuilder()
                        .addFieldViolations(BadRequest.FieldViolation.newBuilder().setField("session_key").setDescription("required"))
                        .addFieldViolations(BadRequest.FieldViolation.newBuilder().setField("entries").setDescription("1 to 1000"))
                        .build()))
            .build();
    script(StatusProto.toStatusRuntimeException(bad));
    try (BatonClient c = client().build()) {
      BatonException e = assertThrows(BatonException.class, () -> c.getSession(get()));
      assertEquals("INVALID_ARGUMENT", e.code());
      assertEquals("bad request", e.getMessage());
      assertEquals(
          List.of(
              new BatonException.FieldViolation("session_key", "required"),
              new BatonException.FieldViolation("entries", "1 to 1000")),
          e.fieldViolations());
    }
    assertEquals(1, callTimes.size());
  }

  @Test
  void attemptsAndDeadlineBoundTheRetries() {
    for (int i = 0; i < 100; i++) {
      script(error(Code.UNAVAILABLE, null));
    }
    try (BatonClient c = client().maxAttempts(4).build()) {
      BatonException e = assertThrows(BatonException.class, () -> c.getSession(get()));
      assertEquals("UNAVAILABLE", e.code());
      assertEquals(4, callTimes.size());
    }

    callTimes.clear();
    long start = System.nanoTime();
    try (BatonClient c = client().maxAttempts(1000).timeout(Duration.ofMillis(600)).build()) {
      BatonException e = assertThrows(BatonException.class, () -> c.getSession(get()));
      assertTrue(e.code().equals("UNAVAILABLE") || e.code().equals("DEADLINE_EXCEEDED"), e.toString());
    }
    long elapsed = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
    assertTrue(elapsed < 3000, "gave up at the deadline, after " + elapsed + " ms");
    assertTrue(callTimes.size() > 2, "retried within the deadline");
  }

  @Test
  void tenantAndApiKeyHeadersAreSent() {
    try (BatonClient c = client().tenant("acme").apiKey("sk-test-123").build()) {
      c.getSession(get());
    }
    Metadata h = headers.get(0);
    assertEquals("acme", h.get(Metadata.Key.of("x-baton-tenant", Metadata.ASCII_STRING_MARSHALLER)));
    assertEquals("Bearer sk-test-123", h.get(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER)));

    headers.clear();
    try (BatonClient c = client().build()) {
      c.getSession(get());
    }
    assertEquals(null, headers.get(0).get(Metadata.Key.of("x-baton-tenant", Metadata.ASCII_STRING_MARSHALLER)));
    assertEquals(null, headers.get(0).get(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER)));
  }
}
