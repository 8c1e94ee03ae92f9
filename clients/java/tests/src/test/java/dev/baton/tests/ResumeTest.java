package dev.baton.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.baton.client.BatonClient;
import dev.baton.client.BatonStream;
import dev.baton.v1.CreateSessionRequest;
import dev.baton.v1.Entry;
import dev.baton.v1.HandoffEvent;
import dev.baton.v1.HandoffEventType;
import dev.baton.v1.HandoffType;
import dev.baton.v1.RequestHandoffRequest;
import dev.baton.v1.StreamEntriesRequest;
import dev.baton.v1.WatchHandoffsRequest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.LongStream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Streams that outlive a restart of batond on the same port, each with its own server. */
class ResumeTest {
  private Batond batond;
  private BatonClient client;

  @BeforeEach
  void start() {
    batond = Batond.start();
    client = BatonClient.builder().target(batond.target()).tenant("java-resume").build();
  }

  @AfterEach
  void stop() {
    client.close();
    batond.close();
  }

  @Test
  void followingStreamSurvivesARestartAndDeliversEveryEntryOnce() throws Exception {
    String key = ClientTest.unique("follow");
    client.createSession(CreateSessionRequest.newBuilder().setSessionKey(key).setAgent("writer").build());
    for (int i = 1; i <= 5; i++) {
      client.appendEntries(ClientTest.append(key, "writer", "before " + i));
    }

    List<Long> seen = Collections.synchronizedList(new ArrayList<>());
    CountDownLatch firstFive = new CountDownLatch(5);
    // max_entries counts across the reconnection: the stream ends by itself after the tenth.
    BatonStream<Entry> stream =
        client.streamEntries(
            StreamEntriesRequest.newBuilder().setSessionKey(key).setFollow(true).setMaxEntries(10).build());
    Future<?> follower =
        Batond.THREADS.submit(
            () -> {
              while (stream.hasNext()) {
                seen.add(stream.next().getSeq());
                firstFive.countDown();
              }
            });
    assertTrue(firstFive.await(20, TimeUnit.SECONDS), "replayed the first five: " + seen);

    batond.restart();
    for (int i = 6; i <= 10; i++) {
      client.appendEntries(ClientTest.append(key, "writer", "after " + i));
    }

    follower.get(60, TimeUnit.SECONDS);
    stream.close();
    assertEquals(LongStream.rangeClosed(1, 10).boxed().toList(), seen, "1..10, once each, in order");
  }

  @Test
  void watchHandoffsResumesAfterTheLastCursorAcrossARestart() throws Exception {
    String watcher = ClientTest.unique("watcher");
    String key = ClientTest.unique("inbox");
    client.createSession(CreateSessionRequest.newBuilder().setSessionKey(key).setAgent("sender").build());
    client.appendEntries(ClientTest.append(key, "sender", "some context"));
    RequestHandoffRequest ask =
        RequestHandoffRequest.newBuilder()
            .setSessionKey(key)
            .setFromAgent("sender")
            .setToAgent(watcher)
            .setType(HandoffType.HANDOFF_TYPE_COLLABORATION)
            .build();
    List<String> requested = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      requested.add(client.requestHandoff(ask).getHandoffId());
    }

    List<HandoffEvent> events = Collections.synchronizedList(new ArrayList<>());
    CountDownLatch firstThree = new CountDownLatch(3);
    BatonStream<HandoffEvent> inbox = client.watchHandoffs(WatchHandoffsRequest.newBuilder().setAgent(watcher).build());
    Future<?> reader =
        Batond.THREADS.submit(
            () -> {
              while (events.size() < 6 && inbox.hasNext()) {
                events.add(inbox.next());
                firstThree.countDown();
              }
            });
    assertTrue(firstThree.await(20, TimeUnit.SECONDS), "the pending three: " + events);

    batond.restart();
    for (int i = 0; i < 3; i++) {
      requested.add(client.requestHandoff(ask).getHandoffId());
    }

    reader.get(60, TimeUnit.SECONDS);
    inbox.close();
    assertEquals(requested, events.stream().map(e -> e.getHandoff().getHandoffId()).toList(), "each handoff once, in order");
    assertTrue(events.stream().allMatch(e -> e.getType() == HandoffEventType.HANDOFF_EVENT_TYPE_CREATED));
    List<Long> cursors = events.stream().map(HandoffEvent::getCursor).toList();
    for (int i = 1; i < cursors.size(); i++) {
      assertTrue(cursors.get(i) > cursors.get(i - 1), "cursors increase: " + cursors);
    }

    // An explicit after_cursor resumes the same way.
    try (BatonStream<HandoffEvent> resumed =
        client.withTimeout(Duration.ofSeconds(20))
            .watchHandoffs(WatchHandoffsRequest.newBuilder().setAgent(watcher).setAfterCursor(cursors.get(2)).build())) {
      List<String> rest = new ArrayList<>();
      for (int i = 0; i < 3; i++) {
        rest.add(resumed.next().getHandoff().getHandoffId());
      }
      assertEquals(requested.subList(3, 6), rest, "after the third cursor: " + cursors.stream().map(String::valueOf).collect(Collectors.joining(",")));
    }
  }
}
