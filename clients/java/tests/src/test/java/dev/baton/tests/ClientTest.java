package dev.baton.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Struct;
import com.google.protobuf.Value;
import dev.baton.client.BatonClient;
import dev.baton.client.BatonException;
import dev.baton.client.BatonStream;
import dev.baton.v1.AcceptHandoffRequest;
import dev.baton.v1.AppendEntriesRequest;
import dev.baton.v1.AppendEntriesResponse;
import dev.baton.v1.CancelHandoffRequest;
import dev.baton.v1.CloseSessionRequest;
import dev.baton.v1.CompleteHandoffRequest;
import dev.baton.v1.CreateSessionRequest;
import dev.baton.v1.Entry;
import dev.baton.v1.EntryKind;
import dev.baton.v1.ForkSessionRequest;
import dev.baton.v1.GetContextWindowRequest;
import dev.baton.v1.GetContextWindowResponse;
import dev.baton.v1.GetHandoffRequest;
import dev.baton.v1.GetSessionRequest;
import dev.baton.v1.Handoff;
import dev.baton.v1.HandoffEvent;
import dev.baton.v1.HandoffEventType;
import dev.baton.v1.HandoffStatus;
import dev.baton.v1.HandoffType;
import dev.baton.v1.ListEntriesRequest;
import dev.baton.v1.ListEntriesResponse;
import dev.baton.v1.ListHandoffsRequest;
import dev.baton.v1.ListSessionsRequest;
import dev.baton.v1.NewEntry;
import dev.baton.v1.RejectHandoffRequest;
import dev.baton.v1.RequestHandoffRequest;
import dev.baton.v1.SearchEntriesRequest;
import dev.baton.v1.SearchEntriesResponse;
import dev.baton.v1.Session;
import dev.baton.v1.SessionStatus;
import dev.baton.v1.StreamEntriesRequest;
import dev.baton.v1.StreamHandoffContextRequest;
import dev.baton.v1.UpdateSessionRequest;
import dev.baton.v1.WatchHandoffsRequest;
import io.opentelemetry.api.GlobalOpenTelemetry;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanContext;
import io.opentelemetry.api.trace.TraceFlags;
import io.opentelemetry.api.trace.TraceState;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.opentelemetry.context.Scope;
import io.opentelemetry.context.propagation.ContextPropagators;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Every RPC, the error mapping, idempotent retries and deadlines, against one real batond. */
class ClientTest {
  private static Batond batond;
  private static BatonClient client;

  @BeforeAll
  static void startServer() {
    batond = Batond.start();
    client = BatonClient.builder().target(batond.target()).tenant("java-tests").build();
  }

  @AfterAll
  static void stopServer() {
    if (client != null) {
      client.close();
    }
    if (batond != null) {
      batond.close();
    }
  }

  static String unique(String prefix) {
    return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
  }

  static NewEntry message(String author, String text) {
    return NewEntry.newBuilder()
        .setKind(EntryKind.ENTRY_KIND_MESSAGE)
        .setRole("assistant")
        .setAuthor(author)
        .setText(text)
        .build();
  }

  static AppendEntriesRequest append(String key, String author, String... texts) {
    AppendEntriesRequest.Builder b = AppendEntriesRequest.newBuilder().setSessionKey(key);
    for (String t : texts) {
      b.addEntries(message(author, t));
    }
    return b.build();
  }

  static Session newSession(BatonClient c, String agent) {
    return c.createSession(CreateSessionRequest.newBuilder().setSessionKey(unique("s")).setAgent(agent).build());
  }

  // --- every RPC ---------------------------------------------------------------------------

  @Test
  void contextServiceRpcs() {
    String key = unique("ctx");
    Struct meta = Struct.newBuilder().putFields("project", Value.newBuilder().setStringValue("orders").build()).build();
    Session created =
        client.createSession(
            CreateSessionRequest.newBuilder().setSessionKey(key).setAgent("planner").setMetadata(meta).build());
    assertEquals(key, created.getSessionKey());
    assertEquals("planner", created.getOwner());
    assertEquals("java-tests", created.getTenant());
    assertEquals(0, created.getLastSeq());

    Session got = client.getSession(GetSessionRequest.newBuilder().setSessionKey(key).build());
    assertEquals("orders", got.getMetadata().getFieldsOrThrow("project").getStringValue());

    boolean listed =
        client.listSessions(ListSessionsRequest.newBuilder().setAgent("planner").setPageSize(1000).build())
            .getSessionsList().stream()
            .anyMatch(s -> s.getSessionKey().equals(key));
    assertTrue(listed, "ListSessions shows the new session");

    Session updated =
        client.updateSession(
            UpdateSessionRequest.newBuilder().setSessionKey(key).setStatus(SessionStatus.SESSION_STATUS_DORMANT).build());
    assertEquals(SessionStatus.SESSION_STATUS_DORMANT, updated.getStatus());

    AppendEntriesResponse appended =
        client.appendEntries(append(key, "planner", "migrate the orders schema", "then backfill the orders", "done"));
    assertEquals(1, appended.getFirstSeq());
    assertEquals(3, appended.getLastSeq());
    assertEquals(3, appended.getEntriesCount());

    ListEntriesResponse page =
        client.listEntries(ListEntriesRequest.newBuilder().setSessionKey(key).setAfterSeq(1).build());
    assertEquals(List.of(2L, 3L), page.getEntriesList().stream().map(Entry::getSeq).toList());

    List<Long> streamed = new ArrayList<>();
    try (BatonStream<Entry> s = client.streamEntries(StreamEntriesRequest.newBuilder().setSessionKey(key).build())) {
      s.forEachRemaining(e -> streamed.add(e.getSeq()));
    }
    assertEquals(List.of(1L, 2L, 3L), streamed);

    GetContextWindowResponse window =
        client.getContextWindow(GetContextWindowRequest.newBuilder().setSessionKey(key).build());
    assertEquals(3, window.getLastSeq());
    assertEquals(3, window.getEntriesCount());
    assertTrue(window.getTotalTokens() > 0);

    SearchEntriesResponse hits =
        client.searchEntries(SearchEntriesRequest.newBuilder().setSessionKey(key).setQuery("backfill").build());
    assertEquals(1, hits.getHitsCount());
    assertEquals(2, hits.getHits(0).getEntry().getSeq());

    Session closed = client.closeSession(CloseSessionRequest.newBuilder().setSessionKey(key).build());
    assertEquals(SessionStatus.SESSION_STATUS_CLOSED, closed.getStatus());
  }

  @Test
  void handoffAcceptedReadAndCompleted() {
    Session s = newSession(client, "planner");
    String key = s.getSessionKey();
    client.appendEntries(append(key, "planner", "plan the migration", "write the backfill"));
    String coder = unique("coder");

    Handoff requested =
        client.requestHandoff(
            RequestHandoffRequest.newBuilder()
                .setSessionKey(key)
                .setFromAgent("planner")
                .setToAgent(coder)
                .setType(HandoffType.HANDOFF_TYPE_FULL_HANDOFF)
                .setInstructions("take it from here")
                .build());
    assertEquals(HandoffStatus.HANDOFF_STATUS_PENDING, requested.getStatus());
    assertEquals(2, requested.getUpToSeq());
    String id = requested.getHandoffId();

    assertEquals(key, client.getHandoff(GetHandoffRequest.newBuilder().setHandoffId(id).build()).getSessionKey());
    List<Handoff> toCoder =
        client.listHandoffs(ListHandoffsRequest.newBuilder().setToAgent(coder).build()).getHandoffsList();
    assertEquals(List.of(id), toCoder.stream().map(Handoff::getHandoffId).toList());

    try (BatonStream<HandoffEvent> inbox = client.watchHandoffs(WatchHandoffsRequest.newBuilder().setAgent(coder).build())) {
      HandoffEvent first = inbox.next();
      assertEquals(HandoffEventType.HANDOFF_EVENT_TYPE_CREATED, first.getType());
      assertEquals(id, first.getHandoff().getHandoffId());
    }

    Handoff accepted = client.acceptHandoff(AcceptHandoffRequest.newBuilder().setHandoffId(id).setAgent(coder).build());
    assertEquals(HandoffStatus.HANDOFF_STATUS_ACCEPTED, accepted.getStatus());

    List<Entry> pkg = new ArrayList<>();
    try (BatonStream<Entry> context =
        client.streamHandoffContext(StreamHandoffContextRequest.newBuilder().setHandoffId(id).build())) {
      context.forEachRemaining(pkg::add);
    }
    assertEquals(EntryKind.ENTRY_KIND_SUMMARY, pkg.get(0).getKind(), "the summary comes first");
    assertEquals(List.of(1L, 2L), pkg.subList(1, pkg.size()).stream().map(Entry::getSeq).toList());

    Handoff completed =
        client.completeHandoff(CompleteHandoffRequest.newBuilder().setHandoffId(id).setAgent(coder).build());
    assertEquals(HandoffStatus.HANDOFF_STATUS_COMPLETED, completed.getStatus());
  }

  @Test
  void handoffRejectedAndCancelled() {
    Session s = newSession(client, "planner");
    client.appendEntries(append(s.getSessionKey(), "planner", "context"));
    RequestHandoffRequest ask =
        RequestHandoffRequest.newBuilder()
            .setSessionKey(s.getSessionKey())
            .setFromAgent("planner")
            .setToAgent("reviewer")
            .setType(HandoffType.HANDOFF_TYPE_CONTEXT_TRANSFER)
            .build();

    Handoff first = client.requestHandoff(ask);
    Handoff rejected =
        client.rejectHandoff(
            RejectHandoffRequest.newBuilder().setHandoffId(first.getHandoffId()).setAgent("reviewer").setReason("busy").build());
    assertEquals(HandoffStatus.HANDOFF_STATUS_REJECTED, rejected.getStatus());
    assertEquals("busy", rejected.getReason());

    Handoff second = client.requestHandoff(ask);
    Handoff cancelled =
        client.cancelHandoff(
            CancelHandoffRequest.newBuilder().setHandoffId(second.getHandoffId()).setAgent("planner").setReason("done myself").build());
    assertEquals(HandoffStatus.HANDOFF_STATUS_CANCELLED, cancelled.getStatus());
  }

  // --- errors ------------------------------------------------------------------------------

  @Test
  void unknownSessionAndHandoffAreNotFound() {
    BatonException session =
        assertThrows(BatonException.class, () -> client.getSession(GetSessionRequest.newBuilder().setSessionKey(unique("nope")).build()));
    assertEquals("NOT_FOUND", session.code());
    assertFalse(session.getMessage().isEmpty());
    assertTrue(session.fieldViolations().isEmpty());
    assertTrue(session.toString().contains("NOT_FOUND"));

    BatonException handoff =
        assertThrows(BatonException.class, () -> client.getHandoff(GetHandoffRequest.newBuilder().setHandoffId(unique("h")).build()));
    assertEquals("NOT_FOUND", handoff.code());

    BatonException stream;
    try (BatonStream<Entry> s = client.streamEntries(StreamEntriesRequest.newBuilder().setSessionKey(unique("nope")).build())) {
      stream = assertThrows(BatonException.class, s::hasNext);
    }
    assertEquals("NOT_FOUND", stream.code());
  }

  @Test
  void badInputIsInvalidArgumentWithFieldViolations() {
    Session s = newSession(client, "planner");
    AppendEntriesRequest bad =
        AppendEntriesRequest.newBuilder()
            .setSessionKey(s.getSessionKey())
            .addEntries(NewEntry.newBuilder().setText("no kind, no author"))
            .build();
    BatonException e = assertThrows(BatonException.class, () -> client.appendEntries(bad));
    assertEquals("INVALID_ARGUMENT", e.code());
    List<String> fields = e.fieldViolations().stream().map(BatonException.FieldViolation::field).toList();
    assertTrue(fields.stream().anyMatch(f -> f.contains("kind")), "kind is flagged: " + fields);
    assertTrue(fields.stream().anyMatch(f -> f.contains("author")), "author is flagged: " + fields);
    assertTrue(e.fieldViolations().stream().noneMatch(v -> v.description().isEmpty()));

    BatonException noAgent =
        assertThrows(BatonException.class, () -> client.createSession(CreateSessionRequest.newBuilder().build()));
    assertEquals("INVALID_ARGUMENT", noAgent.code());
    assertTrue(
        noAgent.fieldViolations().stream().anyMatch(v -> v.field().equals("agent")),
        "agent is flagged: " + noAgent.fieldViolations());

    ListEntriesResponse none = client.listEntries(ListEntriesRequest.newBuilder().setSessionKey(s.getSessionKey()).build());
    assertEquals(0, none.getEntriesCount(), "a rejected append writes nothing");
  }

  @Test
  void otherCodesAreRaisedAtOnce() {
    Session s = newSession(client, "planner");
    BatonException taken =
        assertThrows(
            BatonException.class,
            () -> client.createSession(CreateSessionRequest.newBuilder().setSessionKey(s.getSessionKey()).setAgent("x").build()));
    assertEquals("ALREADY_EXISTS", taken.code());

    AppendEntriesRequest stale = append(s.getSessionKey(), "planner", "late").toBuilder().setExpectedLastSeq(7).build();
    long start = System.nanoTime();
    BatonException mismatch = assertThrows(BatonException.class, () -> client.appendEntries(stale));
    assertEquals("FAILED_PRECONDITION", mismatch.code());
    assertTrue(System.nanoTime() - start < TimeUnit.SECONDS.toNanos(2), "not retried");
  }

  @Test
  void tenantHeaderIsolatesSessions() {
    try (BatonClient other = BatonClient.builder().target("http://" + batond.target()).tenant(unique("t")).build()) {
      Session mine = newSession(client, "planner");
      BatonException e =
          assertThrows(
              BatonException.class,
              () -> other.getSession(GetSessionRequest.newBuilder().setSessionKey(mine.getSessionKey()).build()));
      assertEquals("NOT_FOUND", e.code());
      Session theirs = newSession(other, "planner");
      assertFalse(theirs.getTenant().equals("java-tests"));
    }
  }

  // --- idempotency and retries -------------------------------------------------------------

  @Test
  void appendsGetAnIdempotencyKeyAndAGivenKeyIsKept() {
    Session s = newSession(client, "planner");
    AppendEntriesResponse auto = client.appendEntries(append(s.getSessionKey(), "planner", "one"));
    assertFalse(auto.getEntries(0).getIdempotencyKey().isEmpty(), "the client added a key");

    AppendEntriesRequest keyed = append(s.getSessionKey(), "planner", "two").toBuilder().setIdempotencyKey("my-key").build();
    AppendEntriesResponse a = client.appendEntries(keyed);
    AppendEntriesResponse b = client.appendEntries(keyed);
    assertEquals("my-key", a.getEntries(0).getIdempotencyKey());
    assertEquals(a.getFirstSeq(), b.getFirstSeq());
    ListEntriesResponse all = client.listEntries(ListEntriesRequest.newBuilder().setSessionKey(s.getSessionKey()).build());
    assertEquals(2, all.getEntriesCount());
  }

  @Test
  void appendRetriedAfterADroppedAnswerIsStoredOnce() {
    Session s = newSession(client, "planner");
    try (DropProxy proxy = new DropProxy(batond.grpcPort());
        BatonClient viaProxy =
            BatonClient.builder().target(proxy.target()).tenant("java-tests").backoff(Duration.ofMillis(50), Duration.ofMillis(200)).build()) {
      // Open the connection first, so the armed drop hits the append's answer.
      viaProxy.getSession(GetSessionRequest.newBuilder().setSessionKey(s.getSessionKey()).build());
      Batond.sleep(200);
      proxy.armDrop();

      AppendEntriesResponse r = viaProxy.appendEntries(append(s.getSessionKey(), "planner", "exactly once", "and this too"));

      assertEquals(1, proxy.drops(), "the first answer was dropped");
      assertEquals(1, r.getFirstSeq());
      assertEquals(2, r.getLastSeq());
    }
    ListEntriesResponse stored = client.listEntries(ListEntriesRequest.newBuilder().setSessionKey(s.getSessionKey()).build());
    assertEquals(List.of(1L, 2L), stored.getEntriesList().stream().map(Entry::getSeq).toList(), "stored once");
    assertEquals(stored.getEntries(0).getIdempotencyKey(), stored.getEntries(1).getIdempotencyKey());
  }

  @Test
  void createsAndTransitionsRetriedAfterDroppedAnswersHappenOnce() {
    String tenant = unique("java-idem");
    try (DropProxy proxy = new DropProxy(batond.grpcPort());
        BatonClient direct = BatonClient.builder().target(batond.target()).tenant(tenant).build();
        BatonClient viaProxy =
            BatonClient.builder().target(proxy.target()).tenant(tenant).backoff(Duration.ofMillis(50), Duration.ofMillis(200)).build()) {
      // Open the connection first, so each armed drop hits the answer of the call after it.
      viaProxy.listSessions(ListSessionsRequest.getDefaultInstance());
      Batond.sleep(200);

      proxy.armDrop();
      Session s = viaProxy.createSession(CreateSessionRequest.newBuilder().setAgent("planner").build());
      assertEquals(1, proxy.drops(), "the create's first answer was dropped");
      direct.appendEntries(append(s.getSessionKey(), "planner", "context"));

      Batond.sleep(200);
      proxy.armDrop();
      Session fork = viaProxy.forkSession(ForkSessionRequest.newBuilder().setSessionKey(s.getSessionKey()).setAgent("reviewer").build());
      assertEquals(2, proxy.drops(), "the fork's first answer was dropped");
      assertEquals(1, fork.getLastSeq());

      Batond.sleep(200);
      proxy.armDrop();
      Handoff h =
          viaProxy.requestHandoff(
              RequestHandoffRequest.newBuilder()
                  .setSessionKey(s.getSessionKey())
                  .setFromAgent("planner")
                  .setToAgent("reviewer")
                  .setType(HandoffType.HANDOFF_TYPE_CONTEXT_TRANSFER)
                  .build());
      assertEquals(3, proxy.drops(), "the request's first answer was dropped");

      Batond.sleep(200);
      proxy.armDrop();
      Handoff accepted =
          viaProxy.acceptHandoff(AcceptHandoffRequest.newBuilder().setHandoffId(h.getHandoffId()).setAgent("reviewer").build());
      assertEquals(4, proxy.drops(), "the accept's first answer was dropped");
      assertEquals(HandoffStatus.HANDOFF_STATUS_ACCEPTED, accepted.getStatus());

      List<String> sessions =
          direct.listSessions(ListSessionsRequest.getDefaultInstance()).getSessionsList().stream()
              .map(Session::getSessionKey)
              .sorted()
              .toList();
      assertEquals(List.of(s.getSessionKey(), fork.getSessionKey()).stream().sorted().toList(), sessions, "one session, one fork");
      List<Handoff> handoffs = direct.listHandoffs(ListHandoffsRequest.newBuilder().setSessionKey(s.getSessionKey()).build()).getHandoffsList();
      assertEquals(List.of(h.getHandoffId()), handoffs.stream().map(Handoff::getHandoffId).toList(), "one handoff");
    }
  }

  @Test
  void callsCarryTheApplicationsTraceContext() {
    Session s = newSession(client, "planner");
    String traceId = "0af7651916cd43dd8448eb211c80319c";
    GlobalOpenTelemetry.resetForTest();
    GlobalOpenTelemetry.set(OpenTelemetry.propagating(ContextPropagators.create(W3CTraceContextPropagator.getInstance())));
    try {
      SpanContext parent = SpanContext.create(traceId, "b7ad6b7169203331", TraceFlags.getSampled(), TraceState.getDefault());
      AppendEntriesResponse traced;
      try (Scope ignored = Span.wrap(parent).makeCurrent()) {
        traced = client.appendEntries(append(s.getSessionKey(), "planner", "traced"));
      }
      assertEquals(traceId, traced.getEntries(0).getTraceId(), "batond stored the caller's trace id");
      AppendEntriesResponse untraced = client.appendEntries(append(s.getSessionKey(), "planner", "untraced"));
      assertEquals("", untraced.getEntries(0).getTraceId());
    } finally {
      GlobalOpenTelemetry.resetForTest();
    }
  }

  // --- deadlines ---------------------------------------------------------------------------

  @Test
  void unaryCallsHaveTheClientDeadline() {
    try (BatonClient hasty = BatonClient.builder().target(batond.target()).timeout(Duration.ofNanos(1)).build()) {
      BatonException e =
          assertThrows(BatonException.class, () -> hasty.listSessions(ListSessionsRequest.getDefaultInstance()));
      assertEquals("DEADLINE_EXCEEDED", e.code());
    }
  }

  @Test
  void followingStreamsEndAtAnExplicitDeadlineOnly() throws Exception {
    Session s = newSession(client, "planner");
    StreamEntriesRequest follow = StreamEntriesRequest.newBuilder().setSessionKey(s.getSessionKey()).setFollow(true).build();

    long start = System.nanoTime();
    try (BatonStream<Entry> bounded = client.withTimeout(Duration.ofMillis(400)).streamEntries(follow)) {
      BatonException e = assertThrows(BatonException.class, bounded::hasNext);
      assertEquals("DEADLINE_EXCEEDED", e.code());
    }
    long elapsed = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
    assertTrue(elapsed >= 350 && elapsed < 5000, "ended at the deadline, after " + elapsed + " ms");

    // The client's default timeout (300 ms here) does not cut a following stream.
    try (BatonClient shortTimeout =
            BatonClient.builder().target(batond.target()).tenant("java-tests").timeout(Duration.ofMillis(300)).build();
        BatonStream<Entry> open = shortTimeout.streamEntries(follow)) {
      CompletableFuture<Entry> first = CompletableFuture.supplyAsync(open::next, Batond.THREADS);
      Batond.sleep(1000);
      client.appendEntries(append(s.getSessionKey(), "planner", "after a second"));
      assertEquals(1, first.get(10, TimeUnit.SECONDS).getSeq());
    }
  }

  @Test
  void closingAStreamFromAnotherThreadEndsIt() throws Exception {
    Session s = newSession(client, "planner");
    BatonStream<Entry> open =
        client.streamEntries(StreamEntriesRequest.newBuilder().setSessionKey(s.getSessionKey()).setFollow(true).build());
    CompletableFuture<Boolean> waiting = CompletableFuture.supplyAsync(open::hasNext, Batond.THREADS);
    Batond.sleep(300);
    open.close();
    assertFalse(waiting.get(10, TimeUnit.SECONDS), "hasNext() returns false after close()");
    open.close();
  }
}
