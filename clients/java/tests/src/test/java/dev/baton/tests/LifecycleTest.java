package dev.baton.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.baton.client.BatonClient;
import dev.baton.client.BatonException;
import dev.baton.client.BatonStream;
import dev.baton.v1.AppendEntriesRequest;
import dev.baton.v1.CompactSessionRequest;
import dev.baton.v1.ContextServiceGrpc;
import dev.baton.v1.CreateSessionRequest;
import dev.baton.v1.DeleteSessionRequest;
import dev.baton.v1.DeleteSessionResponse;
import dev.baton.v1.Entry;
import dev.baton.v1.EntryKind;
import dev.baton.v1.ForkSessionRequest;
import dev.baton.v1.GetSessionRequest;
import dev.baton.v1.HandoffServiceGrpc;
import dev.baton.v1.ListEntriesRequest;
import dev.baton.v1.NewEntry;
import dev.baton.v1.RedactEntriesRequest;
import dev.baton.v1.RedactEntriesResponse;
import dev.baton.v1.Retention;
import dev.baton.v1.Session;
import dev.baton.v1.SessionRef;
import dev.baton.v1.StreamEntriesRequest;
import dev.baton.v1.UpdateSessionRequest;
import io.grpc.MethodDescriptor;
import io.grpc.ServiceDescriptor;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.Arrays;
import java.util.List;
import java.util.UUID;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/** The data lifecycle RPCs against a real batond: delete, fork, redact, compact, legal hold. */
class LifecycleTest {
  private static Batond batond;
  private static BatonClient client;

  @BeforeAll
  static void startServer() {
    batond = Batond.start();
    client = BatonClient.builder().target(batond.target()).tenant("java-lifecycle").build();
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

  /** A new session owned by {@code agent} holding the entries "entry 1" .. "entry n". */
  private static String seeded(String agent, int n) {
    String key = "life-" + UUID.randomUUID().toString().substring(0, 8);
    client.createSession(CreateSessionRequest.newBuilder().setSessionKey(key).setAgent(agent).build());
    AppendEntriesRequest.Builder b = AppendEntriesRequest.newBuilder().setSessionKey(key);
    for (int i = 1; i <= n; i++) {
      b.addEntries(
          NewEntry.newBuilder()
              .setKind(EntryKind.ENTRY_KIND_MESSAGE)
              .setRole("assistant")
              .setAuthor(agent)
              .setText("entry " + i));
    }
    client.appendEntries(b.build());
    return key;
  }

  private static Session session(String key) {
    return client.getSession(GetSessionRequest.newBuilder().setSessionKey(key).build());
  }

  private static List<Entry> entries(String key) {
    return client.listEntries(ListEntriesRequest.newBuilder().setSessionKey(key).build()).getEntriesList();
  }

  private static List<Long> seqs(List<Entry> entries) {
    return entries.stream().map(Entry::getSeq).toList();
  }

  private static String code(Executable call) {
    return assertThrows(BatonException.class, call).code();
  }

  private static DeleteSessionResponse delete(String key) {
    return client.deleteSession(DeleteSessionRequest.newBuilder().setSessionKey(key).build());
  }

  @Test
  void everyRpcHasAMethod() {
    // A new RPC in proto/ must get a method on BatonClient (this fails until it does).
    int rpcs = 0;
    for (ServiceDescriptor service :
        List.of(ContextServiceGrpc.getServiceDescriptor(), HandoffServiceGrpc.getServiceDescriptor())) {
      for (MethodDescriptor<?, ?> rpc : service.getMethods()) {
        rpcs++;
        String bare = rpc.getBareMethodName();
        String name = Character.toLowerCase(bare.charAt(0)) + bare.substring(1);
        boolean found =
            Arrays.stream(BatonClient.class.getMethods())
                .filter(m -> Modifier.isPublic(m.getModifiers()))
                .map(Method::getName)
                .anyMatch(name::equals);
        assertTrue(found, "BatonClient." + name + " for " + rpc.getFullMethodName());
      }
    }
    assertEquals(23, rpcs, "the services' RPCs");
  }

  @Test
  void deleteSessionErasesIt() {
    String key = seeded("planner", 3);
    assertEquals(3, delete(key).getDeletedEntries());
    assertEquals("NOT_FOUND", code(() -> session(key)));
    assertEquals("NOT_FOUND", code(() -> entries(key)));
    assertEquals("NOT_FOUND", code(() -> delete(key)));
  }

  @Test
  void forkCopiesEntriesUpToAtSeq() {
    String source = seeded("planner", 5);
    String forkKey = source + "-fork";
    Session fork =
        client.forkSession(
            ForkSessionRequest.newBuilder()
                .setSessionKey(source)
                .setAtSeq(3)
                .setNewSessionKey(forkKey)
                .setAgent("explorer")
                .build());
    assertEquals(forkKey, fork.getSessionKey());
    assertEquals("explorer", fork.getOwner());
    assertEquals(3, fork.getLastSeq());
    assertEquals(SessionRef.newBuilder().setSessionKey(source).setSeq(3).build(), fork.getForkedFrom());

    List<Entry> copied = entries(forkKey);
    assertEquals(List.of(1L, 2L, 3L), seqs(copied));
    assertEquals(
        List.of("entry 1", "entry 2", "entry 3"), copied.stream().map(Entry::getText).toList());
    long next =
        client
            .appendEntries(
                AppendEntriesRequest.newBuilder()
                    .setSessionKey(forkKey)
                    .addEntries(
                        NewEntry.newBuilder()
                            .setKind(EntryKind.ENTRY_KIND_MESSAGE)
                            .setAuthor("explorer")
                            .setText("elsewhere"))
                    .build())
            .getFirstSeq();
    assertEquals(4, next);
    assertEquals(5, session(source).getLastSeq(), "the source is unchanged");
    assertFalse(session(source).hasForkedFrom());

    Session grand =
        client.forkSession(
            ForkSessionRequest.newBuilder().setSessionKey(forkKey).setAtSeq(2).setAgent("planner").build());
    assertFalse(grand.getSessionKey().isEmpty());
    assertNotEquals(forkKey, grand.getSessionKey());
    assertEquals(forkKey, grand.getForkedFrom().getSessionKey());
    assertEquals(2, grand.getForkedFrom().getSeq());
    assertEquals(source, session(grand.getForkedFrom().getSessionKey()).getForkedFrom().getSessionKey());
  }

  @Test
  void redactionEmptiesTheContentAndRetractLastChecksTheLastSeq() {
    String key = seeded("planner", 3);
    RedactEntriesResponse r =
        client.redactEntries(
            RedactEntriesRequest.newBuilder()
                .setSessionKey(key)
                .addSeqs(2)
                .setReason("leaked a password")
                .setAgent("planner")
                .build());
    assertEquals(List.of(2L), seqs(r.getEntriesList()));
    Entry red = r.getEntries(0);
    assertTrue(red.getRedacted());
    // The content is empty (batond sends an empty text), never the old text or data.
    assertEquals("", red.getText());
    assertTrue(red.getData().isEmpty());
    assertEquals("planner", red.getAuthor());
    assertEquals(EntryKind.ENTRY_KIND_MESSAGE, red.getKind());
    assertEquals("leaked a password", red.getRedaction().getReason());
    assertFalse(red.getRedaction().getRedactedBy().isEmpty());
    assertTrue(red.getRedaction().hasRedactedAt());

    List<Entry> listed = entries(key);
    assertEquals(List.of(1L, 2L, 3L), seqs(listed));
    assertEquals(List.of("entry 1", "", "entry 3"), listed.stream().map(Entry::getText).toList());
    assertEquals(List.of(false, true, false), listed.stream().map(Entry::getRedacted).toList());

    Supplier<RedactEntriesRequest.Builder> retract =
        () ->
            RedactEntriesRequest.newBuilder()
                .setSessionKey(key)
                .addSeqs(3)
                .setReason("retract")
                .setAgent("planner");
    assertEquals(
        "FAILED_PRECONDITION",
        code(() -> client.redactEntries(retract.get().setExpectedLastSeq(2).build())));
    assertFalse(entries(key).get(2).getRedacted(), "the stale retraction changed nothing");
    assertTrue(client.redactEntries(retract.get().setExpectedLastSeq(3).build()).getEntries(0).getRedacted());
  }

  @Test
  void compactionMovesFirstSeqAndReadsBelowItAreOutOfRange() {
    String key = seeded("planner", 5);
    assertEquals(1, session(key).getFirstSeq());
    Session compacted =
        client.compactSession(CompactSessionRequest.newBuilder().setSessionKey(key).setBeforeSeq(3).build());
    assertEquals(3, compacted.getFirstSeq());
    assertEquals(5, compacted.getLastSeq());
    assertEquals(
        List.of(3L, 4L, 5L),
        seqs(
            client
                .listEntries(ListEntriesRequest.newBuilder().setSessionKey(key).setAfterSeq(2).build())
                .getEntriesList()));
    assertEquals(
        "OUT_OF_RANGE",
        code(() -> client.listEntries(ListEntriesRequest.newBuilder().setSessionKey(key).setAfterSeq(1).build())));
    try (BatonStream<Entry> below =
        client.streamEntries(StreamEntriesRequest.newBuilder().setSessionKey(key).setAfterSeq(1).build())) {
      assertEquals("OUT_OF_RANGE", code(below::hasNext));
    }
  }

  @Test
  void legalHoldBlocksDeleteCompactionAndRedaction() {
    String key = seeded("planner", 2);
    assertTrue(
        client
            .updateSession(UpdateSessionRequest.newBuilder().setSessionKey(key).setLegalHold(true).build())
            .getLegalHold());
    assertEquals("FAILED_PRECONDITION", code(() -> delete(key)));
    assertEquals(
        "FAILED_PRECONDITION",
        code(() -> client.compactSession(CompactSessionRequest.newBuilder().setSessionKey(key).setBeforeSeq(2).build())));
    assertEquals(
        "FAILED_PRECONDITION",
        code(
            () ->
                client.redactEntries(
                    RedactEntriesRequest.newBuilder()
                        .setSessionKey(key)
                        .addSeqs(1)
                        .setReason("r")
                        .setAgent("planner")
                        .build())));
    assertEquals(List.of(false, false), entries(key).stream().map(Entry::getRedacted).toList());

    Retention retention =
        Retention.newBuilder()
            .setKeepLatest(100)
            .setMaxAge(com.google.protobuf.Duration.newBuilder().setSeconds(30L * 86400))
            .build();
    Session kept =
        client.updateSession(UpdateSessionRequest.newBuilder().setSessionKey(key).setRetention(retention).build());
    assertTrue(kept.getLegalHold(), "an update without legal_hold leaves it set");
    assertEquals(retention, kept.getRetention());

    assertFalse(
        client
            .updateSession(UpdateSessionRequest.newBuilder().setSessionKey(key).setLegalHold(false).build())
            .getLegalHold());
    assertEquals(2, delete(key).getDeletedEntries());
  }
}
