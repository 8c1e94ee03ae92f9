package dev.baton.client;

import dev.baton.v1.AcceptHandoffRequest;
import dev.baton.v1.AppendEntriesRequest;
import dev.baton.v1.AppendEntriesResponse;
import dev.baton.v1.CancelHandoffRequest;
import dev.baton.v1.CloseSessionRequest;
import dev.baton.v1.CompactSessionRequest;
import dev.baton.v1.CompleteHandoffRequest;
import dev.baton.v1.ContextServiceGrpc;
import dev.baton.v1.CreateSessionRequest;
import dev.baton.v1.DeleteSessionRequest;
import dev.baton.v1.DeleteSessionResponse;
import dev.baton.v1.Entry;
import dev.baton.v1.ForkSessionRequest;
import dev.baton.v1.GetContextWindowRequest;
import dev.baton.v1.GetContextWindowResponse;
import dev.baton.v1.GetHandoffRequest;
import dev.baton.v1.GetSessionRequest;
import dev.baton.v1.Handoff;
import dev.baton.v1.HandoffEvent;
import dev.baton.v1.HandoffServiceGrpc;
import dev.baton.v1.ListEntriesRequest;
import dev.baton.v1.ListEntriesResponse;
import dev.baton.v1.ListHandoffsRequest;
import dev.baton.v1.ListHandoffsResponse;
import dev.baton.v1.ListSessionsRequest;
import dev.baton.v1.ListSessionsResponse;
import dev.baton.v1.RedactEntriesRequest;
import dev.baton.v1.RedactEntriesResponse;
import dev.baton.v1.RejectHandoffRequest;
import dev.baton.v1.RequestHandoffRequest;
import dev.baton.v1.SearchEntriesRequest;
import dev.baton.v1.SearchEntriesResponse;
import dev.baton.v1.Session;
import dev.baton.v1.StreamEntriesRequest;
import dev.baton.v1.StreamHandoffContextRequest;
import dev.baton.v1.UpdateSessionRequest;
import dev.baton.v1.WatchHandoffsRequest;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.ClientInterceptors;
import io.grpc.Deadline;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import io.grpc.stub.ClientCalls;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * A client of Baton's {@code ContextService} and {@code HandoffService}: one blocking method per
 * RPC, taking the generated request message (package {@code dev.baton.v1}) and returning the
 * generated response.
 *
 * <pre>{@code
 * try (BatonClient client = BatonClient.builder().target("localhost:50051").tenant("acme").build()) {
 *   Session s = client.createSession(CreateSessionRequest.newBuilder().setAgent("planner").build());
 *   client.appendEntries(AppendEntriesRequest.newBuilder()
 *       .setSessionKey(s.getSessionKey())
 *       .addEntries(NewEntry.newBuilder()
 *           .setKind(EntryKind.ENTRY_KIND_MESSAGE).setAuthor("planner").setText("Plan: ..."))
 *       .build());
 * }
 * }</pre>
 *
 * <p>What the client adds over the raw gRPC stubs:
 *
 * <ul>
 *   <li><b>Errors</b> are one unchecked type, {@link BatonException}, with the canonical code
 *       name, the message, and the request's field violations.
 *   <li><b>Safe retries.</b> {@link #appendEntries}, {@link #createSession}, {@link
 *       #forkSession} and {@link #requestHandoff} without an idempotency key get a fresh one.
 *       Reads, these calls and the handoff transitions (repeated on a handoff already there, they
 *       return it unchanged) are retried on {@code UNAVAILABLE} and {@code RESOURCE_EXHAUSTED}
 *       (including a connection lost before the answer) with exponential backoff and jitter,
 *       waiting at least as long as the server's {@code google.rpc.RetryInfo} asks, always with
 *       the same idempotency key, so a retried append is stored once and a retried create
 *       returns what the first attempt created. Other writes are retried
 *       only when the server refused them ({@code RESOURCE_EXHAUSTED}, or {@code UNAVAILABLE}
 *       with RetryInfo), since a lost answer may hide a write that happened. Other codes are
 *       thrown at once.
 *   <li><b>Streams that resume.</b> {@link #streamEntries} and {@link #watchHandoffs} reconnect
 *       after {@code UNAVAILABLE} (server restart, shutdown, network) and continue after the last
 *       seq or cursor they delivered: every entry and event arrives once, in order.
 *   <li><b>Deadlines.</b> Every call that ends by itself has a deadline ({@link
 *       Builder#timeout(Duration)}, 10 seconds by default) that also bounds its retries; streams
 *       that follow live changes run until closed unless {@link #withTimeout(Duration)} gives
 *       them one.
 *   <li><b>Headers:</b> {@code x-baton-tenant} and {@code authorization: Bearer <api key>}, and
 *       the application's W3C trace context when it uses OpenTelemetry (the optional {@code
 *       opentelemetry-api} dependency on the classpath and a global propagator).
 * </ul>
 *
 * <p>A client holds one HTTP/2 connection and is safe to share between threads; close it when
 * done.
 */
public final class BatonClient implements AutoCloseable {
  /** The deadline of calls when the builder sets none: 10 seconds. */
  public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(10);

  /** Attempts of a retried call (the first one included) when the builder sets none: 10. */
  public static final int DEFAULT_MAX_ATTEMPTS = 10;

  /**
   * The response header with the server's log position after a write (or a read a read replica
   * served): 16 upper-case hexadecimal digits.
   */
  public static final String LSN_HEADER = "baton-lsn";

  /**
   * The request header with the highest log position the client has been told ({@link
   * #logPosition()}): a server with read replicas serves the call's reads from one that has
   * replayed that far, else from the primary, so a client reads its own writes.
   */
  public static final String MIN_LSN_HEADER = "baton-min-lsn";

  private final ManagedChannel channel;
  private final Channel calls;
  private final boolean ownsChannel;
  private final Duration timeout;
  private final boolean timeoutForFollowing;
  private final RetryPolicy retry;
  private final HeadersInterceptor headers;

  private BatonClient(
      ManagedChannel channel,
      HeadersInterceptor headers,
      boolean ownsChannel,
      Duration timeout,
      boolean timeoutForFollowing,
      RetryPolicy retry) {
    this.channel = channel;
    this.headers = headers;
    this.calls = ClientInterceptors.intercept(channel, headers);
    this.ownsChannel = ownsChannel;
    this.timeout = timeout;
    this.timeoutForFollowing = timeoutForFollowing;
    this.retry = retry;
  }

  /**
   * Starts configuring a client.
   *
   * @return a new builder; {@link Builder#target(String)} is required
   */
  public static Builder builder() {
    return new Builder();
  }

  /**
   * A view of this client whose calls, including the streams that follow live changes, have the
   * given deadline (per call, retries and reconnections included). It shares this client's
   * connection: closing the view does nothing, closing this client ends both.
   *
   * <pre>{@code
   * Session s = client.withTimeout(Duration.ofSeconds(2)).getSession(request);
   * }</pre>
   *
   * @param timeout the deadline of each call, positive
   * @return the view
   */
  public BatonClient withTimeout(Duration timeout) {
    return new BatonClient(channel, headers, false, positive(timeout, "timeout"), true, retry);
  }

  /**
   * The highest log position the server has told this client (and its views) of: the {@code
   * baton-lsn} response header, 16 hexadecimal digits. Every call sends it back as {@code
   * baton-min-lsn}, so reads a read replica serves reflect this client's own writes; hand it to
   * another process's client ({@link Builder#logPosition(String)}) to let it read them too.
   *
   * @return the position, or null before the first write to a server with read replicas
   */
  public String logPosition() {
    return headers.position();
  }

  // --- ContextService ----------------------------------------------------------------------

  /**
   * Opens a new session owned by the calling agent ({@code CreateSession}). A request without an
   * idempotency key gets a fresh one, sent on every retry: a retry after a lost answer returns
   * the session the first attempt created.
   *
   * @param request the session key (generated when empty), the agent, metadata, TTL and
   *     optionally an idempotency key
   * @return the new session (or, for a key used before, the session it created, as it is now)
   * @throws BatonException {@code ALREADY_EXISTS} for a taken key, {@code INVALID_ARGUMENT}, ...
   */
  public Session createSession(CreateSessionRequest request) {
    CreateSessionRequest keyed = request;
    if (request.getIdempotencyKey().isEmpty()) {
      keyed = request.toBuilder().setIdempotencyKey(newIdempotencyKey()).build();
    }
    return unary(ContextServiceGrpc.getCreateSessionMethod(), keyed, RetryPolicy.Safety.SAFE);
  }

  /**
   * Returns one session ({@code GetSession}).
   *
   * @param request the session key
   * @return the session
   * @throws BatonException {@code NOT_FOUND} when there is no such session in the tenant
   */
  public Session getSession(GetSessionRequest request) {
    return unary(ContextServiceGrpc.getGetSessionMethod(), request, RetryPolicy.Safety.SAFE);
  }

  /**
   * Lists sessions, newest first, optionally filtered by agent and status, one page at a time
   * ({@code ListSessions}).
   *
   * @param request the filters, page size and page token
   * @return a page of sessions and the token of the next one
   */
  public ListSessionsResponse listSessions(ListSessionsRequest request) {
    return unary(ContextServiceGrpc.getListSessionsMethod(), request, RetryPolicy.Safety.SAFE);
  }

  /**
   * Changes a session's metadata, status, time to live, legal hold or retention ({@code
   * UpdateSession}). Unset fields are left as they are; {@code setLegalHold} (admin keys only)
   * sets or lifts the hold, {@code setRetention} replaces the retention ({@code keep_latest},
   * {@code max_age}; both zero: the server's default).
   *
   * @param request the session key and the fields to change
   * @return the session after the change
   * @throws BatonException {@code NOT_FOUND}, {@code INVALID_ARGUMENT}, {@code
   *     FAILED_PRECONDITION}
   */
  public Session updateSession(UpdateSessionRequest request) {
    return unary(ContextServiceGrpc.getUpdateSessionMethod(), request, RetryPolicy.Safety.UNSAFE);
  }

  /**
   * Closes a session: it stays readable but accepts no more entries ({@code CloseSession}).
   *
   * @param request the session key
   * @return the closed session
   * @throws BatonException {@code NOT_FOUND} when there is no such session
   */
  public Session closeSession(CloseSessionRequest request) {
    return unary(ContextServiceGrpc.getCloseSessionMethod(), request, RetryPolicy.Safety.UNSAFE);
  }

  /**
   * Appends a batch of entries atomically; they get consecutive sequence numbers ({@code
   * AppendEntries}).
   *
   * <p>A request without an idempotency key gets a fresh random one, and every retry of the call
   * sends the same key, so the batch is stored once even when an answer was lost and the call
   * was retried.
   *
   * @param request the session key, the entries, and optionally an idempotency key and the
   *     expected last seq
   * @return the seq range and the stored entries
   * @throws BatonException {@code NOT_FOUND}, {@code INVALID_ARGUMENT} with field violations,
   *     {@code FAILED_PRECONDITION} (closed session, or {@code expected_last_seq} mismatch)
   */
  public AppendEntriesResponse appendEntries(AppendEntriesRequest request) {
    AppendEntriesRequest keyed = request;
    if (request.getIdempotencyKey().isEmpty()) {
      keyed = request.toBuilder().setIdempotencyKey(newIdempotencyKey()).build();
    }
    return unary(ContextServiceGrpc.getAppendEntriesMethod(), keyed, RetryPolicy.Safety.SAFE);
  }

  /**
   * Lists a session's entries in sequence order, one page at a time ({@code ListEntries}).
   *
   * @param request the session key, seq range, kinds, page size and page token
   * @return a page of entries and the token of the next one
   * @throws BatonException {@code NOT_FOUND} when there is no such session
   */
  public ListEntriesResponse listEntries(ListEntriesRequest request) {
    return unary(ContextServiceGrpc.getListEntriesMethod(), request, RetryPolicy.Safety.SAFE);
  }

  /**
   * Streams a session's entries after {@code after_seq} and, with {@code follow}, the ones
   * appended later ({@code StreamEntries}).
   *
   * <p>When the stream breaks with {@code UNAVAILABLE} (server restart or shutdown, a lost
   * connection) it reopens after the last seq it delivered, so every entry arrives exactly once
   * and in order; {@code max_entries} counts across reconnections. A following stream has no
   * deadline unless it comes from {@link #withTimeout(Duration)}; one without {@code follow}
   * has the client's timeout.
   *
   * @param request the session key, {@code after_seq}, {@code follow}, {@code max_entries}
   * @return the entries; close it when done
   */
  public BatonStream<Entry> streamEntries(StreamEntriesRequest request) {
    Objects.requireNonNull(request, "request");
    return new ResumingStream<>(
        calls,
        ContextServiceGrpc.getStreamEntriesMethod(),
        new EntriesPosition(request),
        retry,
        this::beforeRetry,
        deadline(request.getFollow()));
  }

  /**
   * Returns the newest entries that fit a token budget, after the latest summary entry ({@code
   * GetContextWindow}).
   *
   * @param request the session key and the token and entry budgets
   * @return the summary, the entries, and whether older ones were left out
   * @throws BatonException {@code NOT_FOUND} when there is no such session
   */
  public GetContextWindowResponse getContextWindow(GetContextWindowRequest request) {
    return unary(ContextServiceGrpc.getGetContextWindowMethod(), request, RetryPolicy.Safety.SAFE);
  }

  /**
   * Full-text search over entries' text, best matches first ({@code SearchEntries}).
   *
   * @param request the query, optionally one session, page size and page token
   * @return a page of hits with snippets
   * @throws BatonException {@code INVALID_ARGUMENT} for an empty or malformed query
   */
  public SearchEntriesResponse searchEntries(SearchEntriesRequest request) {
    return unary(ContextServiceGrpc.getSearchEntriesMethod(), request, RetryPolicy.Safety.SAFE);
  }

  /**
   * Erases a session for good: its entries, handoffs and idempotency records ({@code
   * DeleteSession}). Streams following it end with {@code NOT_FOUND}. Not retried after a lost
   * answer: the session may be gone already.
   *
   * @param request the session key
   * @return how many entries were erased
   * @throws BatonException {@code NOT_FOUND}, {@code FAILED_PRECONDITION} while the session is
   *     under legal hold
   */
  public DeleteSessionResponse deleteSession(DeleteSessionRequest request) {
    return unary(ContextServiceGrpc.getDeleteSessionMethod(), request, RetryPolicy.Safety.UNSAFE);
  }

  /**
   * Starts a new session whose entries 1..{@code at_seq} are copies of another session's
   * ({@code ForkSession}); its {@code forked_from} names the source and seq. Handoffs are not
   * copied. Like {@link #createSession} it carries an idempotency key (fresh unless given), so a
   * retry returns the first fork instead of making a second.
   *
   * @param request the source session, {@code at_seq} (0: its newest), the new key (generated
   *     when empty), the agent that owns the fork and optionally an idempotency key
   * @return the new session
   * @throws BatonException {@code NOT_FOUND}, {@code INVALID_ARGUMENT}, {@code ALREADY_EXISTS}
   */
  public Session forkSession(ForkSessionRequest request) {
    ForkSessionRequest keyed = request;
    if (request.getIdempotencyKey().isEmpty()) {
      keyed = request.toBuilder().setIdempotencyKey(newIdempotencyKey()).build();
    }
    return unary(ContextServiceGrpc.getForkSessionMethod(), keyed, RetryPolicy.Safety.SAFE);
  }

  /**
   * Erases the content and metadata of entries ({@code RedactEntries}): each keeps its seq,
   * kind, role, author and timestamps and reads back with {@code redacted} true and a {@code
   * redaction} (who, when, why). With {@code expected_last_seq} it redacts only while that is
   * the session's newest seq, so an agent can retract exactly the entry it appended last.
   *
   * @param request the session key, the seqs, the reason, the agent and optionally the
   *     expected last seq
   * @return the redacted entries as they read now
   * @throws BatonException {@code NOT_FOUND}, {@code INVALID_ARGUMENT}, {@code
   *     FAILED_PRECONDITION} (legal hold, or {@code expected_last_seq} mismatch)
   */
  public RedactEntriesResponse redactEntries(RedactEntriesRequest request) {
    return unary(ContextServiceGrpc.getRedactEntriesMethod(), request, RetryPolicy.Safety.UNSAFE);
  }

  /**
   * Removes the entries before {@code before_seq} ({@code CompactSession}); the session's
   * {@code first_seq} moves to the oldest one kept, and reads below it fail with {@code
   * OUT_OF_RANGE}.
   *
   * @param request the session key, {@code before_seq} and {@code force} (needed to remove the
   *     newest SUMMARY entry)
   * @return the session after compaction
   * @throws BatonException {@code NOT_FOUND}, {@code INVALID_ARGUMENT}, {@code
   *     FAILED_PRECONDITION} (legal hold, or past the newest summary without force)
   */
  public Session compactSession(CompactSessionRequest request) {
    return unary(ContextServiceGrpc.getCompactSessionMethod(), request, RetryPolicy.Safety.UNSAFE);
  }

  // --- HandoffService ----------------------------------------------------------------------

  /**
   * Asks another agent to take over or join the work on a session ({@code RequestHandoff}). The
   * handoff snapshots the session up to its current last entry. It carries an idempotency key
   * (fresh unless given), so a retry returns the first handoff instead of requesting a second.
   *
   * @param request the session, the two agents, the type, instructions, deadline, token budget
   *     and optionally an idempotency key
   * @return the pending handoff
   * @throws BatonException {@code NOT_FOUND}, {@code INVALID_ARGUMENT}, {@code
   *     FAILED_PRECONDITION}
   */
  public Handoff requestHandoff(RequestHandoffRequest request) {
    RequestHandoffRequest keyed = request;
    if (request.getIdempotencyKey().isEmpty()) {
      keyed = request.toBuilder().setIdempotencyKey(newIdempotencyKey()).build();
    }
    return unary(HandoffServiceGrpc.getRequestHandoffMethod(), keyed, RetryPolicy.Safety.SAFE);
  }

  /**
   * Returns one handoff ({@code GetHandoff}).
   *
   * @param request the handoff id
   * @return the handoff
   * @throws BatonException {@code NOT_FOUND} when there is no such handoff
   */
  public Handoff getHandoff(GetHandoffRequest request) {
    return unary(HandoffServiceGrpc.getGetHandoffMethod(), request, RetryPolicy.Safety.SAFE);
  }

  /**
   * Lists handoffs, newest first, filtered by agents, session and status ({@code ListHandoffs}).
   *
   * @param request the filters, page size and page token
   * @return a page of handoffs and the token of the next one
   */
  public ListHandoffsResponse listHandoffs(ListHandoffsRequest request) {
    return unary(HandoffServiceGrpc.getListHandoffsMethod(), request, RetryPolicy.Safety.SAFE);
  }

  /**
   * The target agent takes a pending handoff ({@code AcceptHandoff}); accepting a full handoff
   * makes it the session's owner. Repeated on a handoff it already accepted, it returns it
   * unchanged, so it is retried after a lost answer like the other transitions.
   *
   * @param request the handoff id and the accepting agent
   * @return the accepted handoff
   * @throws BatonException {@code FAILED_PRECONDITION} when not pending, {@code
   *     PERMISSION_DENIED} when the agent is not the target
   */
  public Handoff acceptHandoff(AcceptHandoffRequest request) {
    return unary(HandoffServiceGrpc.getAcceptHandoffMethod(), request, RetryPolicy.Safety.SAFE);
  }

  /**
   * The target agent declines a pending handoff ({@code RejectHandoff}).
   *
   * @param request the handoff id, the rejecting agent and a reason
   * @return the rejected handoff
   * @throws BatonException {@code FAILED_PRECONDITION}, {@code PERMISSION_DENIED}
   */
  public Handoff rejectHandoff(RejectHandoffRequest request) {
    return unary(HandoffServiceGrpc.getRejectHandoffMethod(), request, RetryPolicy.Safety.SAFE);
  }

  /**
   * The target agent marks an accepted handoff done ({@code CompleteHandoff}).
   *
   * @param request the handoff id and the completing agent
   * @return the completed handoff
   * @throws BatonException {@code FAILED_PRECONDITION}, {@code PERMISSION_DENIED}
   */
  public Handoff completeHandoff(CompleteHandoffRequest request) {
    return unary(HandoffServiceGrpc.getCompleteHandoffMethod(), request, RetryPolicy.Safety.SAFE);
  }

  /**
   * The requesting agent withdraws a pending or accepted handoff ({@code CancelHandoff}).
   *
   * @param request the handoff id, the cancelling agent and a reason
   * @return the cancelled handoff
   * @throws BatonException {@code FAILED_PRECONDITION}, {@code PERMISSION_DENIED}
   */
  public Handoff cancelHandoff(CancelHandoffRequest request) {
    return unary(HandoffServiceGrpc.getCancelHandoffMethod(), request, RetryPolicy.Safety.SAFE);
  }

  /**
   * An agent's handoff inbox ({@code WatchHandoffs}): the pending handoffs addressed to it, then
   * every later event of handoffs it sent or received, live, until closed.
   *
   * <p>After {@code UNAVAILABLE} the stream reopens after the cursor of the last event it
   * delivered, so every event arrives exactly once, in order. It has no deadline unless it comes
   * from {@link #withTimeout(Duration)}.
   *
   * @param request the agent and optionally the cursor to resume after
   * @return the events; close it when done
   */
  public BatonStream<HandoffEvent> watchHandoffs(WatchHandoffsRequest request) {
    Objects.requireNonNull(request, "request");
    return new ResumingStream<>(
        calls,
        HandoffServiceGrpc.getWatchHandoffsMethod(),
        new InboxPosition(request),
        retry,
        this::beforeRetry,
        deadline(true));
  }

  /**
   * A handoff's context package ({@code StreamHandoffContext}): the summary first (a SUMMARY
   * entry with seq 0), then the session's newest entries up to the handoff's {@code up_to_seq}
   * that fit its token budget, in seq order. After {@code UNAVAILABLE} it reopens and skips what
   * it already delivered.
   *
   * @param request the handoff id
   * @return the entries; close it when done
   */
  public BatonStream<Entry> streamHandoffContext(StreamHandoffContextRequest request) {
    Objects.requireNonNull(request, "request");
    return new ResumingStream<>(
        calls,
        HandoffServiceGrpc.getStreamHandoffContextMethod(),
        new PackagePosition(request),
        retry,
        this::beforeRetry,
        deadline(false));
  }

  /**
   * Closes the connection: calls still running fail with {@code UNAVAILABLE} or {@code
   * CANCELLED}. Waits up to five seconds for them to end. Does nothing on a view made by {@link
   * #withTimeout(Duration)}.
   */
  @Override
  public void close() {
    if (!ownsChannel) {
      return;
    }
    channel.shutdown();
    try {
      if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
        channel.shutdownNow();
      }
    } catch (InterruptedException e) {
      channel.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }

  // --- internals ---------------------------------------------------------------------------

  private <Req, Resp> Resp unary(
      MethodDescriptor<Req, Resp> method, Req request, RetryPolicy.Safety safety) {
    Objects.requireNonNull(request, "request");
    Deadline deadline = deadline(false);
    CallOptions options = CallOptions.DEFAULT.withDeadline(deadline);
    for (int failures = 1; ; failures++) {
      BatonException error;
      try {
        return ClientCalls.blockingUnaryCall(calls, method, options, request);
      } catch (StatusRuntimeException e) {
        error = BatonException.from(e);
      }
      Duration wait = retry.retryDelay(error, failures, safety, deadline);
      if (wait == null) {
        throw error;
      }
      beforeRetry();
      try {
        Thread.sleep(wait.toMillis(), wait.toNanosPart() % 1_000_000);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new BatonException("CANCELLED", "interrupted while waiting to retry", List.of(), e);
      }
    }
  }

  /** A connection that failed may sit in gRPC's reconnect backoff; our own backoff paces retries. */
  private void beforeRetry() {
    channel.resetConnectBackoff();
  }

  private Deadline deadline(boolean following) {
    if (following && !timeoutForFollowing) {
      return null;
    }
    return Deadline.after(timeout.toNanos(), TimeUnit.NANOSECONDS);
  }

  private static String newIdempotencyKey() {
    return "java-" + UUID.randomUUID();
  }

  private static Duration positive(Duration d, String what) {
    Objects.requireNonNull(d, what);
    if (d.isNegative() || d.isZero()) {
      throw new IllegalArgumentException(what + " must be positive, got " + d);
    }
    return d;
  }

  /** An entry stream continues after the last seq it delivered, within the same max_entries. */
  private static final class EntriesPosition
      implements ResumingStream.Position<StreamEntriesRequest, Entry> {
    private final StreamEntriesRequest first;
    private long lastSeq = -1;
    private int delivered;

    EntriesPosition(StreamEntriesRequest first) {
      this.first = first;
    }

    @Override
    public StreamEntriesRequest request() {
      if (lastSeq < 0) {
        return first;
      }
      StreamEntriesRequest.Builder next = first.toBuilder().setAfterSeq(lastSeq);
      if (first.getMaxEntries() > 0) {
        next.setMaxEntries(first.getMaxEntries() - delivered);
      }
      return next.build();
    }

    @Override
    public boolean complete() {
      return first.getMaxEntries() > 0 && delivered >= first.getMaxEntries();
    }

    @Override
    public boolean accept(Entry entry) {
      if (entry.getSeq() <= lastSeq) {
        return false;
      }
      lastSeq = entry.getSeq();
      delivered++;
      return true;
    }
  }

  /** An inbox continues after the cursor of the last event it delivered. */
  private static final class InboxPosition
      implements ResumingStream.Position<WatchHandoffsRequest, HandoffEvent> {
    private final WatchHandoffsRequest first;
    private boolean any;
    private long lastCursor;

    InboxPosition(WatchHandoffsRequest first) {
      this.first = first;
    }

    @Override
    public WatchHandoffsRequest request() {
      return any ? first.toBuilder().setAfterCursor(lastCursor).build() : first;
    }

    @Override
    public boolean accept(HandoffEvent event) {
      if (any && event.getCursor() <= lastCursor) {
        return false;
      }
      any = true;
      lastCursor = event.getCursor();
      return true;
    }
  }

  /**
   * A context package is the same on every read of one handoff (summary at seq 0, then entries
   * in seq order), so a reopened stream skips up to the last seq delivered.
   */
  private static final class PackagePosition
      implements ResumingStream.Position<StreamHandoffContextRequest, Entry> {
    private final StreamHandoffContextRequest request;
    private long lastSeq = -1;

    PackagePosition(StreamHandoffContextRequest request) {
      this.request = request;
    }

    @Override
    public StreamHandoffContextRequest request() {
      return request;
    }

    @Override
    public boolean accept(Entry entry) {
      if (entry.getSeq() <= lastSeq) {
        return false;
      }
      lastSeq = entry.getSeq();
      return true;
    }
  }

  /**
   * Configures a {@link BatonClient}. Only the target is required:
   *
   * <pre>{@code
   * BatonClient client = BatonClient.builder()
   *     .target("baton.example.com:443")
   *     .tls(true)
   *     .tenant("acme")
   *     .apiKey(System.getenv("BATON_API_KEY"))
   *     .timeout(Duration.ofSeconds(5))
   *     .build();
   * }</pre>
   */
  public static final class Builder {
    private String target;
    private String tenant;
    private String apiKey;
    private Boolean tls;
    private Path trustedCertificates;
    private Duration timeout = DEFAULT_TIMEOUT;
    private int maxAttempts = DEFAULT_MAX_ATTEMPTS;
    private Duration initialBackoff = Duration.ofMillis(100);
    private Duration maxBackoff = Duration.ofSeconds(3);
    private String logPosition;

    private Builder() {}

    /**
     * The server: {@code host:port}; an {@code http://} or {@code https://} prefix is accepted,
     * and {@code https://} turns TLS on unless {@link #tls(boolean)} says otherwise.
     *
     * @param target e.g. {@code "localhost:50051"}
     * @return this builder
     */
    public Builder target(String target) {
      this.target = Objects.requireNonNull(target, "target");
      return this;
    }

    /**
     * The tenant, sent as the {@code x-baton-tenant} header; unset, the server uses its default
     * ({@code "default"}, or the tenant of the API key).
     *
     * @param tenant the tenant name, or null for none
     * @return this builder
     */
    public Builder tenant(String tenant) {
      this.tenant = tenant;
      return this;
    }

    /**
     * The API key, sent as {@code authorization: Bearer <key>} on every call.
     *
     * @param apiKey the key, or null for none
     * @return this builder
     */
    public Builder apiKey(String apiKey) {
      this.apiKey = apiKey;
      return this;
    }

    /**
     * Whether to connect with TLS (default: off, or on for an {@code https://} target). The
     * server's certificate is checked against the JVM's trusted roots, or against {@link
     * #trustedCertificates(Path)}.
     *
     * @param tls true for TLS
     * @return this builder
     */
    public Builder tls(boolean tls) {
      this.tls = tls;
      return this;
    }

    /**
     * PEM file of the certificate authorities to trust instead of the JVM's roots (e.g. a
     * private CA). Implies TLS.
     *
     * @param pemFile the CA certificates
     * @return this builder
     */
    public Builder trustedCertificates(Path pemFile) {
      this.trustedCertificates = Objects.requireNonNull(pemFile, "pemFile");
      return this;
    }

    /**
     * The deadline of each call that ends by itself (unary calls, streams without follow),
     * retries included. Default: {@link #DEFAULT_TIMEOUT}.
     *
     * @param timeout positive
     * @return this builder
     */
    public Builder timeout(Duration timeout) {
      this.timeout = positive(timeout, "timeout");
      return this;
    }

    /**
     * How many times a retryable call is tried in all, and how many reconnections in a row a
     * stream makes without receiving anything before it gives up. Default: {@link
     * #DEFAULT_MAX_ATTEMPTS}; 1 turns retries off.
     *
     * @param maxAttempts at least 1
     * @return this builder
     */
    public Builder maxAttempts(int maxAttempts) {
      if (maxAttempts < 1) {
        throw new IllegalArgumentException("maxAttempts must be at least 1, got " + maxAttempts);
      }
      this.maxAttempts = maxAttempts;
      return this;
    }

    /**
     * The backoff between attempts: it starts at {@code initial} and doubles up to {@code max};
     * each wait is between half and all of the step, chosen at random. Defaults: 100 ms and 3 s.
     *
     * @param initial the first step, positive
     * @param max the largest step, not shorter than {@code initial}
     * @return this builder
     */
    public Builder backoff(Duration initial, Duration max) {
      this.initialBackoff = positive(initial, "initial backoff");
      this.maxBackoff = positive(max, "max backoff");
      if (max.compareTo(initial) < 0) {
        throw new IllegalArgumentException("max backoff must not be shorter than the initial one");
      }
      return this;
    }

    /**
     * A log position to start from, as another client's {@link BatonClient#logPosition()} gave it
     * (e.g. handed over by the agent that wrote): the client's reads then reflect that client's
     * writes, as they do its own.
     *
     * @param position 1 to 16 hexadecimal digits, or null for none
     * @return this builder
     * @throws IllegalArgumentException when {@code position} is not a log position
     */
    public Builder logPosition(String position) {
      if (position != null && HeadersInterceptor.normalizePosition(position) == null) {
        throw new IllegalArgumentException(
            "logPosition must be a log position as baton-lsn gives it (1 to 16 hexadecimal"
                + " digits), got \"" + position + "\"");
      }
      this.logPosition = position;
      return this;
    }

    /**
     * Connects (lazily: the connection opens with the first call) and returns the client.
     *
     * @return the client; close it when done
     * @throws IllegalStateException when no target was set
     * @throws UncheckedIOException when the trusted certificates cannot be read
     */
    public BatonClient build() {
      if (target == null || target.isBlank()) {
        throw new IllegalStateException("BatonClient.builder(): target(...) is required");
      }
      String address = target.strip();
      boolean secure = trustedCertificates != null;
      if (address.startsWith("https://")) {
        address = address.substring("https://".length());
        secure = true;
      } else if (address.startsWith("http://")) {
        address = address.substring("http://".length());
      }
      while (address.endsWith("/")) {
        address = address.substring(0, address.length() - 1);
      }
      if (tls != null) {
        secure = tls;
      }
      ChannelCredentials credentials;
      if (!secure) {
        credentials = InsecureChannelCredentials.create();
      } else if (trustedCertificates != null) {
        try {
          credentials =
              TlsChannelCredentials.newBuilder()
                  .trustManager(trustedCertificates.toFile())
                  .build();
        } catch (IOException e) {
          throw new UncheckedIOException("cannot read " + trustedCertificates, e);
        }
      } else {
        credentials = TlsChannelCredentials.create();
      }
      ManagedChannel channel =
          Grpc.newChannelBuilder(address, credentials).userAgent("baton-java").build();
      HeadersInterceptor headers =
          new HeadersInterceptor(
              tenant, apiKey, HeadersInterceptor.normalizePosition(logPosition));
      return new BatonClient(
          channel,
          headers,
          true,
          timeout,
          false,
          new RetryPolicy(maxAttempts, initialBackoff, maxBackoff));
    }
  }
}
