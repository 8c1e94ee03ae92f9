package dev.baton.client;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.MethodDescriptor;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCalls;
import java.time.Duration;
import java.util.Iterator;
import java.util.NoSuchElementException;

/**
 * A server stream that reopens itself after a retryable failure (a server restart, a shutdown, a
 * dropped connection) and continues where it stopped, so the caller sees every message once and
 * in order. What "where it stopped" means is the {@link Position}'s business: the last seq of an
 * entry stream, the last cursor of a handoff inbox.
 */
final class ResumingStream<Req, T> implements BatonStream<T> {
  /** Tracks what was delivered and builds the request that continues after it. */
  interface Position<Req, T> {
    /** The request that (re)opens the stream after everything accepted so far. */
    Req request();

    /** Records an item about to be delivered; false when it was delivered before a reconnect. */
    boolean accept(T item);

    /** True when everything the first request asked for was delivered: nothing to reopen. */
    default boolean complete() {
      return false;
    }
  }

  private final Channel channel;
  private final MethodDescriptor<Req, T> method;
  private final Position<Req, T> position;
  private final RetryPolicy policy;
  private final Runnable beforeRetry;
  private final Deadline deadline;
  private final Object lock = new Object();

  private Iterator<T> current;
  private volatile Context.CancellableContext call;
  private volatile boolean closed;
  private T next;
  private boolean done;
  private int failures;

  ResumingStream(
      Channel channel,
      MethodDescriptor<Req, T> method,
      Position<Req, T> position,
      RetryPolicy policy,
      Runnable beforeRetry,
      Deadline deadline) {
    this.channel = channel;
    this.method = method;
    this.position = position;
    this.policy = policy;
    this.beforeRetry = beforeRetry;
    this.deadline = deadline;
  }

  @Override
  public boolean hasNext() {
    if (next != null) {
      return true;
    }
    while (!done) {
      if (closed) {
        finish();
        break;
      }
      try {
        if (current == null) {
          if (position.complete()) {
            finish();
            break;
          }
          open();
        }
        if (!current.hasNext()) {
          finish();
          break;
        }
        T item = current.next();
        failures = 0;
        if (position.accept(item)) {
          next = item;
          return true;
        }
      } catch (StatusRuntimeException e) {
        release();
        if (closed) {
          finish();
          break;
        }
        BatonException error = BatonException.from(e);
        failures++;
        Duration wait = policy.retryDelay(error, failures, RetryPolicy.Safety.SAFE, deadline);
        if (wait == null) {
          finish();
          throw error;
        }
        beforeRetry.run();
        pause(wait);
      }
    }
    return false;
  }

  @Override
  public T next() {
    if (!hasNext()) {
      throw new NoSuchElementException("the stream has ended");
    }
    T item = next;
    next = null;
    return item;
  }

  @Override
  public void close() {
    closed = true;
    Context.CancellableContext c = call;
    if (c != null) {
      c.cancel(null);
    }
    synchronized (lock) {
      lock.notifyAll();
    }
  }

  private void open() {
    CallOptions options = CallOptions.DEFAULT;
    if (deadline != null) {
      options = options.withDeadline(deadline);
    }
    Context.CancellableContext c = Context.current().withCancellation();
    call = c;
    Context previous = c.attach();
    try {
      current = ClientCalls.blockingServerStreamingCall(channel, method, options, position.request());
    } finally {
      c.detach(previous);
    }
    if (closed) {
      c.cancel(null);
    }
  }

  private void release() {
    current = null;
    Context.CancellableContext c = call;
    call = null;
    if (c != null) {
      c.cancel(null);
    }
  }

  private void finish() {
    done = true;
    release();
  }

  private void pause(Duration wait) {
    long end = System.nanoTime() + wait.toNanos();
    synchronized (lock) {
      long left;
      while (!closed && (left = end - System.nanoTime()) > 0) {
        try {
          lock.wait(Math.max(1, left / 1_000_000));
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          finish();
          throw new BatonException("CANCELLED", "interrupted while waiting to resume", java.util.List.of(), e);
        }
      }
    }
  }
}
