package dev.baton.examples;

import dev.baton.client.BatonClient;
import dev.baton.client.BatonStream;
import dev.baton.v1.AcceptHandoffRequest;
import dev.baton.v1.AppendEntriesRequest;
import dev.baton.v1.AppendEntriesResponse;
import dev.baton.v1.CompleteHandoffRequest;
import dev.baton.v1.CreateSessionRequest;
import dev.baton.v1.Entry;
import dev.baton.v1.EntryKind;
import dev.baton.v1.Handoff;
import dev.baton.v1.HandoffEvent;
import dev.baton.v1.HandoffEventType;
import dev.baton.v1.HandoffType;
import dev.baton.v1.NewEntry;
import dev.baton.v1.RequestHandoffRequest;
import dev.baton.v1.Session;
import dev.baton.v1.StreamEntriesRequest;
import dev.baton.v1.StreamHandoffContextRequest;
import dev.baton.v1.WatchHandoffsRequest;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * Baton in one page: a planner agent opens a session and writes to it while a follower streams
 * it live, then hands the work off to a coder agent, which accepts and reads the context package.
 *
 * <p>Run it against a running batond: {@code java dev.baton.examples.Quickstart localhost:50051}
 * (the target defaults to {@code $BATON_TARGET}, then {@code localhost:50051}).
 */
public final class Quickstart {
  private Quickstart() {}

  /**
   * Runs the quickstart against the target given as the first argument.
   *
   * @param args {@code [target]}
   * @throws Exception when a step fails
   */
  public static void main(String[] args) throws Exception {
    String target = args.length > 0 ? args[0] : System.getenv().getOrDefault("BATON_TARGET", "localhost:50051");
    run(target, System.out);
  }

  /**
   * The quickstart itself.
   *
   * @param target the batond to talk to, {@code host:port}
   * @param out where to print what happens
   * @return the handoff, completed
   * @throws Exception when a step fails
   */
  public static Handoff run(String target, PrintStream out) throws Exception {
    ExecutorService follower = Executors.newSingleThreadExecutor();
    try (BatonClient client = BatonClient.builder().target(target).tenant("quickstart").build()) {
      // 1. The planner opens a session (the key is generated).
      Session session = client.createSession(CreateSessionRequest.newBuilder().setAgent("planner").build());
      String key = session.getSessionKey();
      out.println("session " + key + " owned by " + session.getOwner());

      // 2. A follower streams the session live, in another thread.
      CompletableFuture<List<Entry>> followed =
          CompletableFuture.supplyAsync(
              () -> {
                List<Entry> seen = new ArrayList<>();
                StreamEntriesRequest follow =
                    StreamEntriesRequest.newBuilder().setSessionKey(key).setFollow(true).setMaxEntries(3).build();
                try (BatonStream<Entry> entries = client.streamEntries(follow)) {
                  entries.forEachRemaining(seen::add);
                }
                return seen;
              },
              follower);

      // 3. The planner appends three entries (the client adds an idempotency key).
      AppendEntriesResponse appended =
          client.appendEntries(
              AppendEntriesRequest.newBuilder()
                  .setSessionKey(key)
                  .addEntries(message("user", "user", "Migrate the orders table to the new schema."))
                  .addEntries(message("assistant", "planner", "Plan: add columns, backfill, switch reads."))
                  .addEntries(
                      NewEntry.newBuilder()
                          .setKind(EntryKind.ENTRY_KIND_TOOL_CALL)
                          .setRole("tool")
                          .setAuthor("planner")
                          .setText("psql -c '\\d orders'"))
                  .build());
      out.println("appended seqs " + appended.getFirstSeq() + ".." + appended.getLastSeq());
      for (Entry e : followed.get(30, TimeUnit.SECONDS)) {
        out.println("followed #" + e.getSeq() + " " + e.getAuthor() + ": " + e.getText());
      }

      // 4. The planner hands the session off to the coder.
      Handoff handoff =
          client.requestHandoff(
              RequestHandoffRequest.newBuilder()
                  .setSessionKey(key)
                  .setFromAgent("planner")
                  .setToAgent("coder")
                  .setType(HandoffType.HANDOFF_TYPE_FULL_HANDOFF)
                  .setInstructions("Write the migration and its backfill.")
                  .build());
      out.println("handoff " + handoff.getHandoffId() + " " + handoff.getStatus());

      // 5. The coder finds it in its inbox, accepts it and reads the context package.
      String handoffId;
      try (BatonStream<HandoffEvent> inbox =
          client.watchHandoffs(WatchHandoffsRequest.newBuilder().setAgent("coder").build())) {
        HandoffEvent event = inbox.next();
        while (event.getType() != HandoffEventType.HANDOFF_EVENT_TYPE_CREATED
            || !event.getHandoff().getSessionKey().equals(key)) {
          event = inbox.next();
        }
        handoffId = event.getHandoff().getHandoffId();
        out.println("coder's inbox: " + event.getType() + " " + handoffId + " from " + event.getHandoff().getFromAgent());
      }
      Handoff accepted =
          client.acceptHandoff(AcceptHandoffRequest.newBuilder().setHandoffId(handoffId).setAgent("coder").build());
      out.println("accepted: " + accepted.getStatus());
      try (BatonStream<Entry> context =
          client.streamHandoffContext(StreamHandoffContextRequest.newBuilder().setHandoffId(handoffId).build())) {
        while (context.hasNext()) {
          Entry e = context.next();
          String text = e.getText().length() > 60 ? e.getText().substring(0, 60) + "..." : e.getText();
          out.println("context #" + e.getSeq() + " " + e.getKind() + ": " + text.replace('\n', ' '));
        }
      }
      Handoff done =
          client.completeHandoff(CompleteHandoffRequest.newBuilder().setHandoffId(handoffId).setAgent("coder").build());
      out.println("handoff " + done.getStatus());
      return done;
    } finally {
      follower.shutdownNow();
    }
  }

  private static NewEntry message(String role, String author, String text) {
    return NewEntry.newBuilder()
        .setKind(EntryKind.ENTRY_KIND_MESSAGE)
        .setRole(role)
        .setAuthor(author)
        .setText(text)
        .build();
  }
}
