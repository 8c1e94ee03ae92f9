/**
 * The Java client of Baton, the context and handoff service for AI agents.
 *
 * <p>{@link dev.baton.client.BatonClient} has one blocking method per RPC of {@code
 * baton.v1.ContextService} and {@code baton.v1.HandoffService}; the request and response
 * messages are the generated classes of package {@code dev.baton.v1}. Errors are {@link
 * dev.baton.client.BatonException}; server streams are {@link dev.baton.client.BatonStream}s.
 */
package dev.baton.client;
