//! The one paging loop. Every read that walks a session's entries or an agent's inbox in
//! keyset order (stream replays and catch-ups, handoff summaries, context packages, inbox
//! catch-ups) goes through [`for_each_page`]: pages are bounded by count and by bytes (pages
//! of large entries hold fewer of them, so a stream's memory stays bounded whatever its
//! entries' size), and the loop ends at shutdown instead of finishing a long read.

use std::future::Future;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::domain::{Entry, Error, HandoffEvent, Result};

/// Items read per page at most. Large pages make a long replay few queries (2,048 rather
/// than 512: the database's CPU per replayed entry fell by a tenth to a quarter).
pub const PAGE_ITEMS: u32 = 2048;
/// Items of the first page: their size is not known yet, so the first page is small (it
/// bounds the memory of a page of the largest entries), and the first item goes out sooner.
pub const FIRST_PAGE_ITEMS: u32 = 64;
/// Bytes of content a page aims at (two pages are in memory at once: one being sent, the
/// next being read; or four of at most half this, see [`for_each_page`]).
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Items a stream buffers ahead of its client.
pub const STREAM_BUFFER: usize = 64;

/// The receiving end of a server stream. Items are boxed so that a channel's slots stay
/// small: each stream's channel allocates its slots up front, and 10k idle follow streams
/// should not hold 10k blocks of full-size entries.
pub type ItemStream<T> = mpsc::Receiver<Box<Result<T>>>;

/// Something read in keyset order.
pub trait Paged {
    /// Its key: an entry's seq, an event's cursor. Pages continue after the last one read.
    fn position(&self) -> u64;
    /// Roughly how many bytes it holds.
    fn weight(&self) -> usize;
    /// Whether positions follow each other without gaps (an entry's seq does; an inbox
    /// cursor does not), so where the page after next starts can be guessed.
    const DENSE: bool;
}

impl Paged for Entry {
    const DENSE: bool = true;
    fn position(&self) -> u64 {
        self.seq
    }
    fn weight(&self) -> usize {
        self.content.len()
    }
}

impl Paged for HandoffEvent {
    const DENSE: bool = false;
    fn position(&self) -> u64 {
        self.cursor
    }
    fn weight(&self) -> usize {
        self.handoff.summary.len() + self.handoff.instructions.len()
    }
}

/// Why a paged read ended early.
#[derive(Debug)]
pub enum Halt {
    /// The server is shutting down.
    Shutdown,
    /// Reading a page failed.
    Failed(Error),
    /// The consumer wanted no more.
    Stopped,
}

/// What a paged read hands its pages to, in order.
pub trait Consume<T> {
    fn consume(&mut self, page: Vec<T>) -> impl Future<Output = Result<(), Stop>> + Send;
}

/// Reads `fetch(after, limit)` page by page from `after` on and hands every item to `to`,
/// until a page comes back short. While one page is handed on, the next is read: the store
/// and the consumer work at once.
///
/// A long read of dense positions (seqs) also reads the page after next at the same time,
/// where it would start if the next page holds exactly the positions that follow: two
/// queries run at once, on two connections (a replay was bound by one page's read after
/// another, with the consumer waiting two thirds of the time). The guess is used only when
/// the next page proves it (full, ending right before it), so a gap costs one query, never
/// an item. It starts once a read has proved long (from the second full-size page) and
/// when pages are light enough that four of them (two being handed on, two being read)
/// weigh no more than two pages at [`PAGE_BYTES`].
pub async fn for_each_page<T, F>(
    shutdown: &CancellationToken,
    after: u64,
    mut fetch: impl FnMut(u64, u32) -> F,
    to: &mut impl Consume<T>,
) -> Result<(), Halt>
where
    T: Paged,
    F: Future<Output = Result<Vec<T>>>,
{
    let read = |page: F| async move {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => Err(Halt::Shutdown),
            page = page => page.map_err(Halt::Failed),
        }
    };
    let mut limit = FIRST_PAGE_ITEMS;
    // The pages read and not yet handed on, in order: every one but the last is full.
    let mut pages = vec![read(fetch(after, limit)).await?];
    loop {
        let page = pages.last().expect("a page was read");
        let full = page.len() == limit as usize;
        let last = page.last().map(Paged::position);
        let bytes: usize = page.iter().map(Paged::weight).sum();
        let speculate = T::DENSE && limit == PAGE_ITEMS && bytes <= PAGE_BYTES / 2;
        limit = next_limit(limit, bytes);
        let deliver = async {
            for page in pages {
                to.consume(page).await.map_err(|Stop| Halt::Stopped)?;
            }
            Ok(())
        };
        let (true, Some(last)) = (full, last) else { return deliver.await };
        let ahead = last + u64::from(limit);
        let next = read(fetch(last, limit));
        let guess = speculate.then(|| read(fetch(ahead, limit)));
        let guess = async {
            match guess {
                Some(page) => Some(page.await),
                None => None,
            }
        };
        let (delivered, next, guess) = tokio::join!(deliver, next, guess);
        delivered?;
        let next = next?;
        let proven = next.len() == limit as usize && next.last().map(Paged::position) == Some(ahead);
        pages = vec![next];
        // A failed guess is dropped: reading that page again reports the failure, if any.
        if let (true, Some(Ok(guess))) = (proven, guess) {
            pages.push(guess);
        }
    }
}

/// The next page's size: as many items of the last page's average size as fit in
/// `PAGE_BYTES`, between 1 and `PAGE_ITEMS`.
fn next_limit(limit: u32, page_bytes: usize) -> u32 {
    let average = (page_bytes / limit.max(1) as usize).max(1);
    u32::try_from(PAGE_BYTES / average).unwrap_or(u32::MAX).clamp(1, PAGE_ITEMS)
}

/// The stream ended (client gone, limit reached, or shutdown); nothing more to send.
#[derive(Debug)]
pub struct Stop;

/// A stream's sending side and its position.
pub struct Sink<T> {
    pub tx: mpsc::Sender<Box<Result<T>>>,
    sent: u32,
    /// 0: no limit.
    max: u32,
    /// The seq or cursor the stream sends next.
    pub next: u64,
    pub shutdown: CancellationToken,
}

impl<T: Paged + Send> Consume<T> for Sink<T> {
    fn consume(&mut self, page: Vec<T>) -> impl Future<Output = Result<(), Stop>> + Send {
        self.send_page(page)
    }
}

/// Items of a page a stream sends per reservation of room in its channel.
const SEND_BATCH: usize = STREAM_BUFFER / 2;

impl<T: Paged + Send> Sink<T> {
    /// A stream starting at `next`, ending after `max` items (0: no limit).
    pub fn new(tx: mpsc::Sender<Box<Result<T>>>, next: u64, max: u32, shutdown: CancellationToken) -> Self {
        Sink { tx, sent: 0, max, next, shutdown }
    }

    /// Sends one item and moves the position past it.
    pub async fn send(&mut self, item: T) -> Result<(), Stop> {
        let position = item.position();
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => { self.shutting_down().await; return Err(Stop) }
            sent = self.tx.send(Box::new(Ok(item))) => sent.map_err(|_| Stop)?,
        }
        self.next = position + 1;
        self.sent += 1;
        if self.max != 0 && self.sent >= self.max { Err(Stop) } else { Ok(()) }
    }

    /// Sends a page. Room is reserved for up to [`SEND_BATCH`] items at a time, so a stream
    /// that outpaces its client waits (and is woken) once per batch rather than once per item.
    pub async fn send_page(&mut self, page: Vec<T>) -> Result<(), Stop> {
        let mut items = page.into_iter();
        while items.len() > 0 {
            let left = if self.max == 0 { usize::MAX } else { self.max.saturating_sub(self.sent) as usize };
            let n = items.len().min(SEND_BATCH).min(left.max(1));
            let permits = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => { self.shutting_down().await; return Err(Stop) }
                permits = self.tx.reserve_many(n) => permits.map_err(|_| Stop)?,
            };
            for (permit, item) in permits.zip(&mut items) {
                self.next = item.position() + 1;
                self.sent += 1;
                permit.send(Box::new(Ok(item)));
            }
            if self.max != 0 && self.sent >= self.max {
                return Err(Stop);
            }
        }
        Ok(())
    }

    /// Sends what `fetch` reads from the stream's position on; tells the client why it ends
    /// early (an error, or shutdown with the position to resume after).
    pub async fn relay<F>(&mut self, fetch: impl FnMut(u64, u32) -> F) -> Result<(), Stop>
    where
        F: Future<Output = Result<Vec<T>>>,
    {
        let shutdown = self.shutdown.clone();
        let after = self.next - 1;
        // Boxed: a follow stream's task is as large as the largest future it awaits, and it
        // idles for hours between catch-ups; the paging loop's state (its page, the send in
        // progress) is allocated only while it runs.
        match Box::pin(for_each_page(&shutdown, after, fetch, self)).await {
            Ok(()) => Ok(()),
            Err(Halt::Stopped) => Err(Stop),
            Err(Halt::Shutdown) => {
                self.shutting_down().await;
                Err(Stop)
            }
            Err(Halt::Failed(e)) => {
                let _ = self.tx.send(Box::new(Err(e))).await;
                Err(Stop)
            }
        }
    }

    /// Ends the stream with UNAVAILABLE and the position a client resumes after.
    pub async fn shutting_down(&self) {
        let resume = self.next.saturating_sub(1);
        let msg = format!("server shutting down; resume after {resume}");
        let _ = self.tx.send(Box::new(Err(Error::Unavailable(msg)))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_follows_entry_size() {
        assert_eq!(next_limit(PAGE_ITEMS, 0), PAGE_ITEMS);
        assert_eq!(next_limit(PAGE_ITEMS, PAGE_ITEMS as usize * 1024), PAGE_ITEMS);
        assert_eq!(next_limit(10, 10 * 1024 * 1024), 4);
        assert_eq!(next_limit(1, 64 * 1024 * 1024), 1);
    }

    struct N(u64);
    impl Paged for N {
        const DENSE: bool = true;
        fn position(&self) -> u64 {
            self.0
        }
        fn weight(&self) -> usize {
            1
        }
    }

    /// Collects what it is given; stops after `stop_after` items when set.
    #[derive(Default)]
    struct Collect {
        seen: Vec<u64>,
        stop_after: Option<usize>,
    }

    impl Consume<N> for Collect {
        fn consume(&mut self, page: Vec<N>) -> impl Future<Output = Result<(), Stop>> + Send {
            let mut stop = false;
            for item in page {
                self.seen.push(item.0);
                stop = self.stop_after.is_some_and(|n| self.seen.len() >= n);
                if stop {
                    break;
                }
            }
            std::future::ready(if stop { Err(Stop) } else { Ok(()) })
        }
    }

    fn numbers(total: u64) -> impl FnMut(u64, u32) -> std::future::Ready<Result<Vec<N>>> {
        move |after, limit| std::future::ready(Ok((after + 1..=total).take(limit as usize).map(N).collect()))
    }

    /// Reads 1..=total from the start: what was handed on, and where each read started.
    async fn read_numbers(total: u64) -> (Vec<u64>, Vec<u64>) {
        let mut calls = Vec::new();
        let mut inner = numbers(total);
        let fetch = |after, limit| {
            calls.push(after);
            inner(after, limit)
        };
        let mut out = Collect::default();
        for_each_page(&CancellationToken::new(), 0, fetch, &mut out).await.unwrap();
        (out.seen, calls)
    }

    #[tokio::test]
    async fn reads_every_page_then_stops_on_a_short_one() {
        let (first, pages) = (u64::from(FIRST_PAGE_ITEMS), u64::from(PAGE_ITEMS));
        let total = first + pages * 2 + 3;
        let (seen, calls) = read_numbers(total).await;
        assert_eq!(seen, (1..=total).collect::<Vec<_>>());
        assert_eq!(calls, vec![0, first, first + pages, first + pages * 2]);
    }

    /// A long read of dense positions reads the page after next along with the next one,
    /// and uses it.
    #[tokio::test]
    async fn a_long_dense_read_reads_two_pages_at_once() {
        let (first, pages) = (u64::from(FIRST_PAGE_ITEMS), u64::from(PAGE_ITEMS));
        let total = first + pages * 5 + 7;
        let (seen, calls) = read_numbers(total).await;
        assert_eq!(seen, (1..=total).collect::<Vec<_>>());
        // The first two pages one after the other (the read has not proved long yet), then
        // two at a time; the last guess (past the end) reads nothing and is dropped.
        let at = |n: u64| first + pages * n;
        assert_eq!(calls, vec![0, first, at(1), at(2), at(3), at(4), at(5), at(6)]);
    }

    /// A guess that a gap proves wrong is dropped: every item still goes out once, in order.
    #[tokio::test]
    async fn a_gap_drops_the_guess_and_loses_nothing() {
        let stop = CancellationToken::new();
        let (first, pages) = (u64::from(FIRST_PAGE_ITEMS), u64::from(PAGE_ITEMS));
        let gap = first + pages + 100..first + pages + 110;
        let items: Vec<u64> = (1..=first + pages * 4).filter(|n| !gap.contains(n)).collect();
        let mut calls = Vec::new();
        let fetch = |after: u64, limit: u32| {
            calls.push(after);
            let page = items.iter().copied().filter(|&n| n > after).take(limit as usize).map(N).collect();
            std::future::ready(Ok(page))
        };
        let mut out = Collect::default();
        for_each_page(&stop, 0, fetch, &mut out).await.unwrap();
        assert_eq!(out.seen, items);
        // The page after the first full one holds the gap: it ends 10 past the guess, which
        // is dropped and read again from where that page really ended.
        let second_end = first + pages * 2 + 10;
        assert_eq!(calls[..5], [0, first, first + pages, first + pages * 2, second_end]);
    }

    /// Inbox cursors are not dense: no page is read on a guess.
    #[tokio::test]
    async fn positions_with_gaps_are_read_one_page_after_another() {
        struct Sparse(u64);
        impl Paged for Sparse {
            const DENSE: bool = false;
            fn position(&self) -> u64 {
                self.0
            }
            fn weight(&self) -> usize {
                1
            }
        }
        struct Count(usize);
        impl Consume<Sparse> for Count {
            fn consume(&mut self, page: Vec<Sparse>) -> impl Future<Output = Result<(), Stop>> + Send {
                self.0 += page.len();
                std::future::ready(Ok(()))
            }
        }
        let stop = CancellationToken::new();
        let total = u64::from(FIRST_PAGE_ITEMS) + u64::from(PAGE_ITEMS) * 3;
        let mut calls = Vec::new();
        let fetch = |after: u64, limit: u32| {
            calls.push(after);
            std::future::ready(Ok((after + 1..=total).take(limit as usize).map(Sparse).collect()))
        };
        let mut out = Count(0);
        for_each_page(&stop, 0, fetch, &mut out).await.unwrap();
        assert_eq!(out.0, total as usize);
        assert_eq!(calls.len(), 5, "one read per page, the last one empty: {calls:?}");
    }

    /// The next page is being read while the first one is handed on.
    #[tokio::test]
    async fn reads_the_next_page_while_handing_on_this_one() {
        let stop = CancellationToken::new();
        let total = u64::from(FIRST_PAGE_ITEMS) + 5;
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut inner = numbers(total);
        let recorded = std::sync::Arc::clone(&calls);
        let fetch = move |after, limit| {
            recorded.lock().unwrap().push(after);
            inner(after, limit)
        };
        struct Watch(std::sync::Arc<std::sync::Mutex<Vec<u64>>>, Vec<usize>);
        impl Consume<N> for Watch {
            fn consume(&mut self, page: Vec<N>) -> impl Future<Output = Result<(), Stop>> + Send {
                let asked = self.0.lock().unwrap().len();
                self.1.extend(page.iter().map(|_| asked));
                std::future::ready(Ok(()))
            }
        }
        let mut out = Watch(std::sync::Arc::clone(&calls), Vec::new());
        for_each_page(&stop, 0, fetch, &mut out).await.unwrap();
        assert_eq!(out.1.len(), total as usize);
        assert_eq!(out.1[0], 2, "the second page was asked for before the first went out");
        assert_eq!(*calls.lock().unwrap(), vec![0, u64::from(FIRST_PAGE_ITEMS)]);
    }

    /// A page goes out in order, in batches that fit the channel, and never past the
    /// stream's limit.
    #[tokio::test]
    async fn a_sink_sends_a_page_up_to_its_limit() {
        let (tx, mut rx) = mpsc::channel::<Box<Result<N>>>(STREAM_BUFFER);
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(item) = rx.recv().await {
                seen.push((*item).as_ref().map(|n| n.0).unwrap());
            }
            seen
        });
        let mut sink = Sink::new(tx, 1, 150, CancellationToken::new());
        let page = |from: u64, to: u64| (from..=to).map(N).collect::<Vec<_>>();
        assert!(sink.send_page(page(1, 100)).await.is_ok());
        assert_eq!((sink.next, sink.sent), (101, 100));
        assert!(sink.send_page(page(101, 300)).await.is_err(), "the limit ends the stream");
        assert_eq!((sink.next, sink.sent), (151, 150));
        drop(sink);
        assert_eq!(reader.await.unwrap(), (1..=150).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn ends_at_shutdown_on_a_failed_read_and_when_the_consumer_stops() {
        let stop = CancellationToken::new();
        stop.cancel();
        let r = for_each_page(&stop, 0, numbers(10), &mut Collect::default()).await;
        assert!(matches!(r, Err(Halt::Shutdown)));
        let live = CancellationToken::new();
        let mut out = Collect { stop_after: Some(3), ..Collect::default() };
        let r = for_each_page(&live, 0, numbers(10), &mut out).await;
        assert!(matches!(r, Err(Halt::Stopped)));
        assert_eq!(out.seen, vec![1, 2, 3]);
        let failing = |_, _| std::future::ready(Err::<Vec<N>, _>(Error::Unavailable("down".into())));
        let r = for_each_page(&live, 0, failing, &mut Collect::default()).await;
        assert!(matches!(r, Err(Halt::Failed(Error::Unavailable(_)))));
    }
}
