package dev.baton.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.baton.client.BatonClient;
import dev.baton.v1.AppendEntriesRequest;
import dev.baton.v1.CreateSessionRequest;
import dev.baton.v1.EntryKind;
import dev.baton.v1.ListSessionsRequest;
import dev.baton.v1.NewEntry;
import dev.baton.v1.Session;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Read-your-writes through a read replica: batond reads from a replica that is held back (it
 * applies nothing written after it was made), so a read it serves misses every write of the test,
 * and only a client that sends its log position back ({@code baton-min-lsn}) is served by the
 * primary.
 */
class ReadReplicaTest {
  private static Batond batond;

  @BeforeAll
  static void startServer() {
    batond = Batond.startWithReadReplica();
  }

  @AfterAll
  static void stopServer() {
    if (batond != null) {
      batond.close();
    }
  }

  private static BatonClient.Builder client(String tenant) {
    return BatonClient.builder().target(batond.target()).tenant(tenant);
  }

  private static List<String> keys(BatonClient c) {
    return c.listSessions(ListSessionsRequest.getDefaultInstance()).getSessionsList().stream()
        .map(Session::getSessionKey)
        .toList();
  }

  @Test
  void readsFollowTheClientsOwnWrites() {
    String tenant = "java-replica-" + UUID.randomUUID().toString().substring(0, 12);

    // Until batond's first probe found the replica, reads go to the primary; a read the replica
    // serves answers with the position it replayed, so a fresh client has one after it.
    long deadline = System.nanoTime() + 20_000_000_000L;
    for (; ; ) {
      try (BatonClient probe = client(tenant).build()) {
        keys(probe);
        if (probe.logPosition() != null) {
          break;
        }
      }
      if (System.nanoTime() > deadline) {
        fail("batond never served a read from the read replica:\n" + batond.logText());
      }
      Batond.sleep(100);
    }

    try (BatonClient a = client(tenant).build();
        BatonClient b = client(tenant).build()) {
      assertNull(a.logPosition());
      Session s = a.createSession(CreateSessionRequest.newBuilder().setAgent("writer").build());
      String created = a.logPosition();
      assertNotNull(created);
      assertTrue(created.matches("[0-9A-F]{16}"), created);
      a.appendEntries(
          AppendEntriesRequest.newBuilder()
              .setSessionKey(s.getSessionKey())
              .addEntries(
                  NewEntry.newBuilder()
                      .setKind(EntryKind.ENTRY_KIND_MESSAGE)
                      .setAuthor("writer")
                      .setText("hi"))
              .build());
      String appended = a.logPosition();
      assertTrue(appended.compareTo(created) >= 0, created + " then " + appended);
      assertTrue(keys(a).contains(s.getSessionKey()), "A sent its position: the primary served it");
      assertTrue(
          keys(a.withTimeout(Duration.ofSeconds(5))).contains(s.getSessionKey()),
          "a view shares the client's position");

      assertFalse(
          keys(b).contains(s.getSessionKey()), "B has no position: the held-back replica served it");
      String replayed = b.logPosition();
      assertTrue(
          replayed != null && replayed.compareTo(created) < 0,
          "B's position " + replayed + " is the replica's, before " + created);

      try (BatonClient handed = client(tenant).logPosition(appended).build()) {
        assertEquals(appended, handed.logPosition());
        assertTrue(keys(handed).contains(s.getSessionKey()), "a handed-over position reads A's writes");
      }
    }
    try (BatonClient shortForm = client(tenant).logPosition("16b3748").build()) {
      assertEquals("00000000016B3748", shortForm.logPosition());
    }
    assertThrows(IllegalArgumentException.class, () -> client(tenant).logPosition("0/16B3748"));
  }
}
