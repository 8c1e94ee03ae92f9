package dev.baton.client;

import java.util.Iterator;

/**
 * A server stream as a blocking {@link Iterator}: {@link #hasNext()} waits for the next message
 * (or the end of the stream), {@link #next()} returns it.
 *
 * <p>Close it when done, best with try-with-resources; closing cancels the call on the server,
 * and a thread blocked in {@link #hasNext()} then sees the end of the stream. Closing twice, or
 * after the stream ended, does nothing.
 *
 * <pre>{@code
 * try (BatonStream<Entry> entries = client.streamEntries(request)) {
 *   while (entries.hasNext()) {
 *     Entry e = entries.next();
 *     ...
 *   }
 * }
 * }</pre>
 *
 * <p>Errors surface from {@link #hasNext()} and {@link #next()} as {@link BatonException}. A
 * stream is used by one thread at a time, except {@link #close()}, which any thread may call.
 *
 * @param <T> the message type
 */
public interface BatonStream<T> extends Iterator<T>, AutoCloseable {
  /** Cancels the call, if still running, and ends the iteration. Never throws. */
  @Override
  void close();
}
