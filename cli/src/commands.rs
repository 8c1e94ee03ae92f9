//! One function per subcommand: the calls it makes and what it prints, as text or `--json`.

use std::future::Future;
use std::io::Write;

use baton_client::v1::{
    Entry, GetHandoffRequest, GetSessionRequest, Handoff, HandoffEvent, HandoffStatus, ListEntriesRequest,
    ListHandoffsRequest, ListSessionsRequest, SearchEntriesRequest, SearchHit, SessionStatus, StreamEntriesRequest,
    WatchHandoffsRequest,
};
use baton_client::{Client, DEFAULT_CONNECT_TIMEOUT};
use serde_json::{Value, json};

use crate::Failure;
use crate::args::{
    Cli, Command, EntriesCommand, Global, HandoffsCommand, SearchArgs, SessionsCommand, TailArgs, WatchArgs,
};
use crate::follow::follow;
use crate::json::{Proto, to_json};
use crate::render::{self, Table};

/// The most a list call asks for in one page (the server's limit).
const MAX_PAGE: u32 = 1000;
/// The most a search asks for in one page (the server's limit).
const MAX_SEARCH_PAGE: u32 = 100;

pub async fn execute(cli: Cli, out: &mut impl Write) -> Result<(), Failure> {
    let client = connect(&cli.global)?;
    let mut p = Printer { out, json: cli.global.json };
    match cli.command {
        Command::Sessions(SessionsCommand::List { agent, status, limit }) => {
            let sessions = pages(limit, MAX_PAGE, |page_size, page_token| {
                let request = ListSessionsRequest {
                    agent: agent.clone().unwrap_or_default(),
                    status: status.map_or(SessionStatus::Unspecified, Into::into).into(),
                    page_size,
                    page_token,
                };
                let client = client.clone();
                async move { client.list_sessions(request).await.map(|r| (r.sessions, r.next_page_token)) }
            })
            .await?;
            p.list(&sessions, render::SESSION_COLUMNS, render::session_row)
        }
        Command::Sessions(SessionsCommand::Show { session_key, entries }) => {
            show_session(&client, &mut p, session_key, entries).await
        }
        Command::Entries(EntriesCommand::List { session_key, after, kind, limit }) => {
            let kinds: Vec<i32> = kind.into_iter().map(|k| baton_client::v1::EntryKind::from(k).into()).collect();
            let entries = pages(limit, MAX_PAGE, |page_size, page_token| {
                let request = ListEntriesRequest {
                    session_key: session_key.clone(),
                    after_seq: after,
                    kinds: kinds.clone(),
                    page_size,
                    page_token,
                    ..Default::default()
                };
                let client = client.clone();
                async move { client.list_entries(request).await.map(|r| (r.entries, r.next_page_token)) }
            })
            .await?;
            p.list(&entries, render::ENTRY_COLUMNS, render::entry_row)
        }
        Command::Entries(EntriesCommand::Show { session_key, seq }) => {
            let request = ListEntriesRequest {
                session_key: session_key.clone(),
                after_seq: Some(seq.saturating_sub(1)),
                page_size: 1,
                ..Default::default()
            };
            let entry = client.list_entries(request).await?.entries.into_iter().find(|e| e.seq == seq);
            let entry =
                entry.ok_or_else(|| Failure::NotFound(format!("session {session_key:?} has no entry {seq}")))?;
            p.one(&entry, |out| show_entry(out, &entry))
        }
        Command::Tail(args) => tail(&client, &mut p, args).await,
        Command::Search(args) => search(&client, &mut p, args).await,
        Command::Handoffs(HandoffsCommand::Inbox { agent, state, limit }) => {
            list_handoffs(&client, &mut p, Some(agent), None, None, state.into(), limit).await
        }
        Command::Handoffs(HandoffsCommand::List { to, from, session, state, limit }) => {
            list_handoffs(&client, &mut p, to, from, session, state.into(), limit).await
        }
        Command::Handoffs(HandoffsCommand::Show { handoff_id }) => {
            let handoff = client.get_handoff(GetHandoffRequest { handoff_id }).await?;
            p.one(&handoff, |out| show_handoff(out, &handoff))
        }
        Command::Watch(args) => watch(&client, &mut p, args).await,
    }
}

/// A client for the global flags. It connects on the first call, so an unreachable server is
/// that call's UNAVAILABLE (retried within --timeout like any other).
fn connect(global: &Global) -> Result<Client, Failure> {
    let mut builder = Client::builder(global.target.clone())
        .timeout(global.timeout)
        .connect_timeout(global.timeout.min(DEFAULT_CONNECT_TIMEOUT));
    if let Some(tenant) = global.tenant.as_deref().filter(|t| !t.is_empty()) {
        builder = builder.tenant(tenant);
    }
    if let Some(key) = global.api_key.as_deref().filter(|k| !k.is_empty()) {
        builder = builder.api_key(key);
    }
    if let Some(path) = &global.tls_ca {
        let pem = std::fs::read(path)
            .map_err(|e| Failure::Usage(format!("cannot read the --tls-ca file {}: {e}", path.display())))?;
        builder = builder.ca_certificate(pem);
    }
    if let Some(name) = &global.tls_server_name {
        builder = builder.tls_domain(name.clone());
    }
    Ok(builder.connect_lazy()?)
}

/// Where records go: a table or label/value block, or one JSON object per line.
struct Printer<'a, W: Write> {
    out: &'a mut W,
    json: bool,
}

impl<W: Write> Printer<'_, W> {
    fn json_line(&mut self, value: &Value) -> std::io::Result<()> {
        writeln!(self.out, "{value}")
    }

    fn list<T: Proto>(
        &mut self,
        items: &[T],
        columns: &[&'static str],
        row: impl Fn(&T) -> Vec<String>,
    ) -> Result<(), Failure> {
        if self.json {
            items.iter().try_for_each(|item| self.json_line(&to_json(item)))?;
        } else {
            let mut table = Table::new(columns);
            items.iter().for_each(|item| table.row(row(item)));
            table.write(self.out)?;
        }
        Ok(())
    }

    fn one<T: Proto>(&mut self, item: &T, human: impl FnOnce(&mut W) -> std::io::Result<()>) -> Result<(), Failure> {
        if self.json {
            self.json_line(&to_json(item))?
        } else {
            human(self.out)?
        }
        Ok(())
    }
}

/// Up to `limit` items (0: all) from a paged list call `page(page_size, page_token)`.
async fn pages<T, F, Fut>(limit: usize, max_page: u32, mut page: F) -> Result<Vec<T>, Failure>
where
    F: FnMut(u32, String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), baton_client::Error>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let wanted = match limit {
            0 => max_page,
            n => u32::try_from(n - items.len()).unwrap_or(u32::MAX).min(max_page),
        };
        let (got, next) = page(wanted, token).await?;
        items.extend(got);
        if next.is_empty() || (limit > 0 && items.len() >= limit) {
            break;
        }
        token = next;
    }
    if limit > 0 {
        items.truncate(limit);
    }
    Ok(items)
}

/// The session, how many entries it holds, its first `n` entries and the last `n` after those.
async fn show_session(
    client: &Client,
    p: &mut Printer<'_, impl Write>,
    session_key: String,
    n: u32,
) -> Result<(), Failure> {
    let n = n.min(MAX_PAGE);
    let session = client.get_session(GetSessionRequest { session_key: session_key.clone() }).await?;
    let first_seq = session.first_seq.max(1);
    let count = (session.last_seq + 1).saturating_sub(first_seq);
    let list = |after_seq: Option<u64>| {
        let request =
            ListEntriesRequest { session_key: session_key.clone(), after_seq, page_size: n, ..Default::default() };
        async move { client.list_entries(request).await.map(|r| r.entries) }
    };
    let (head, tail) = match n {
        0 => (Vec::new(), Vec::new()),
        _ => {
            let head = list(None).await?;
            let head_end = head.last().map_or(0, |e| e.seq);
            let tail = match session.last_seq > head_end {
                true => list(Some(session.last_seq.saturating_sub(u64::from(n)).max(head_end))).await?,
                false => Vec::new(),
            };
            (head, tail)
        }
    };
    let omitted = count.saturating_sub((head.len() + tail.len()) as u64);
    if p.json {
        let entries = |list: &[Entry]| list.iter().map(to_json).collect::<Vec<_>>();
        let value = json!({
            "session": to_json(&session),
            "entryCount": count,
            "firstEntries": entries(&head),
            "lastEntries": entries(&tail),
        });
        p.json_line(&value)?;
        return Ok(());
    }
    let out = &mut *p.out;
    let span = match count {
        0 => "0".to_owned(),
        _ => format!("{count} (seq {first_seq} to {})", session.last_seq),
    };
    let forked = session.forked_from.as_ref().map_or("-".into(), |f| format!("{} at seq {}", f.session_key, f.seq));
    render::fields(
        out,
        &[
            ("session", session.session_key.clone()),
            ("tenant", session.tenant.clone()),
            ("status", render::session_status(session.status)),
            ("owner", session.owner.clone()),
            ("created by", session.created_by.clone()),
            ("created", render::time_exact(session.created_at.as_ref())),
            ("updated", render::time_exact(session.updated_at.as_ref())),
            ("last activity", render::time_exact(session.last_activity_at.as_ref())),
            ("expires", render::time_exact(session.expires_at.as_ref())),
            ("entries", span),
            ("forked from", forked),
            ("legal hold", if session.legal_hold { "yes" } else { "no" }.into()),
            ("metadata", metadata(&to_json(&session))),
        ],
    )?;
    if head.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut table = Table::new(render::ENTRY_COLUMNS);
    head.iter().for_each(|e| table.row(render::entry_row(e)));
    if omitted > 0 {
        let mut gap = vec![String::new(); render::ENTRY_COLUMNS.len()];
        gap[0] = "…".into();
        gap[render::ENTRY_COLUMNS.len() - 1] = format!("({omitted} more; batonctl entries list {session_key})");
        table.row(gap);
    }
    tail.iter().for_each(|e| table.row(render::entry_row(e)));
    table.write(out)?;
    Ok(())
}

/// A message's `metadata` as compact JSON, `-` when empty.
fn metadata(message: &Value) -> String {
    match &message["metadata"] {
        Value::Object(fields) if !fields.is_empty() => message["metadata"].to_string(),
        _ => "-".into(),
    }
}

fn show_entry(out: &mut impl Write, e: &Entry) -> std::io::Result<()> {
    let redaction = match (&e.redacted, &e.redaction) {
        (false, _) => "no".to_owned(),
        (true, None) => "yes".to_owned(),
        (true, Some(r)) => format!(
            "by {} at {}: {}",
            r.redacted_by,
            render::time_exact(r.redacted_at.as_ref()),
            render::or_dash(&r.reason)
        ),
    };
    render::fields(
        out,
        &[
            ("session", e.session_key.clone()),
            ("seq", e.seq.to_string()),
            ("kind", render::kind(e.kind)),
            ("role", render::or_dash(&e.role)),
            ("author", render::or_dash(&e.author)),
            ("created", render::time_exact(e.created_at.as_ref())),
            ("tokens", e.token_count.to_string()),
            ("media type", render::or_dash(&e.media_type)),
            ("idempotency key", render::or_dash(&e.idempotency_key)),
            ("trace id", render::or_dash(&e.trace_id)),
            ("redacted", redaction),
            ("metadata", metadata(&to_json(e))),
        ],
    )?;
    writeln!(out)?;
    writeln!(out, "{}", render::entry_content(e))
}

async fn tail(client: &Client, p: &mut Printer<'_, impl Write>, args: TailArgs) -> Result<(), Failure> {
    let TailArgs { session_key, from, lines, full } = args;
    let start_after = match from {
        Some(seq) => seq.saturating_sub(1),
        None => {
            let session = client.get_session(GetSessionRequest { session_key: session_key.clone() }).await?;
            session.last_seq.saturating_sub(lines).max(session.first_seq.saturating_sub(1))
        }
    };
    let open = |last: Option<u64>| {
        let request = StreamEntriesRequest {
            session_key: session_key.clone(),
            after_seq: last.unwrap_or(start_after),
            follow: true,
            ..Default::default()
        };
        client.stream_entries(request)
    };
    let json = p.json;
    let out = &mut *p.out;
    follow(
        open,
        |e: &Entry| e.seq,
        |e| match (json, full) {
            (true, _) => writeln!(out, "{}", to_json(e)),
            (false, false) => writeln!(out, "{}", tail_line(e, &render::entry_summary(e))),
            (false, true) => {
                writeln!(out, "{}", tail_line(e, ""))?;
                render::entry_content(e).lines().try_for_each(|line| writeln!(out, "    {line}"))
            }
        },
    )
    .await
}

/// One followed entry: fixed widths, since later lines cannot realign earlier ones.
fn tail_line(e: &Entry, text: &str) -> String {
    let line = format!(
        "{:>6}  {}  {:<11}  {}  {}  {text}",
        e.seq,
        render::time(e.created_at.as_ref()),
        render::kind(e.kind),
        render::or_dash(&e.role),
        render::or_dash(&e.author),
    );
    line.trim_end().to_owned()
}

async fn search(client: &Client, p: &mut Printer<'_, impl Write>, args: SearchArgs) -> Result<(), Failure> {
    let SearchArgs { query, session, limit } = args;
    let hits = pages(limit, MAX_SEARCH_PAGE, |page_size, page_token| {
        let request = SearchEntriesRequest {
            session_key: session.clone().unwrap_or_default(),
            query: query.clone(),
            page_size,
            page_token,
        };
        async move { client.search_entries(request).await.map(|r| (r.hits, r.next_page_token)) }
    })
    .await?;
    p.list(&hits, &["SCORE", "SESSION", "SEQ", "AUTHOR", "SNIPPET"], |hit: &SearchHit| {
        let entry = hit.entry.clone().unwrap_or_default();
        vec![
            render::score(hit.score),
            entry.session_key,
            entry.seq.to_string(),
            render::or_dash(&entry.author),
            render::one_line(&hit.snippet, 2 * render::TEXT_WIDTH),
        ]
    })
}

async fn list_handoffs(
    client: &Client,
    p: &mut Printer<'_, impl Write>,
    to_agent: Option<String>,
    from_agent: Option<String>,
    session_key: Option<String>,
    status: HandoffStatus,
    limit: usize,
) -> Result<(), Failure> {
    let handoffs = pages(limit, MAX_PAGE, |page_size, page_token| {
        let request = ListHandoffsRequest {
            to_agent: to_agent.clone().unwrap_or_default(),
            from_agent: from_agent.clone().unwrap_or_default(),
            session_key: session_key.clone().unwrap_or_default(),
            status: status.into(),
            page_size,
            page_token,
        };
        async move { client.list_handoffs(request).await.map(|r| (r.handoffs, r.next_page_token)) }
    })
    .await?;
    p.list(&handoffs, render::HANDOFF_COLUMNS, render::handoff_row)
}

fn show_handoff(out: &mut impl Write, h: &Handoff) -> std::io::Result<()> {
    let budget = match h.max_tokens {
        0 => "server default".to_owned(),
        n => n.to_string(),
    };
    render::fields(
        out,
        &[
            ("handoff", h.handoff_id.clone()),
            ("session", h.session_key.clone()),
            ("status", render::handoff_status(h.status)),
            ("type", render::handoff_type(h.r#type)),
            ("from", h.from_agent.clone()),
            ("to", h.to_agent.clone()),
            ("up to seq", h.up_to_seq.to_string()),
            ("token budget", budget),
            ("created", render::time_exact(h.created_at.as_ref())),
            ("updated", render::time_exact(h.updated_at.as_ref())),
            ("deadline", render::time_exact(h.deadline.as_ref())),
            ("reason", render::or_dash(&h.reason)),
        ],
    )?;
    for (title, text) in [("instructions", &h.instructions), ("summary", &h.summary)] {
        writeln!(out, "\n{title}:")?;
        match text.is_empty() {
            true => writeln!(out, "    -")?,
            false => text.lines().try_for_each(|line| writeln!(out, "    {line}"))?,
        }
    }
    Ok(())
}

async fn watch(client: &Client, p: &mut Printer<'_, impl Write>, args: WatchArgs) -> Result<(), Failure> {
    let WatchArgs { agent, after } = args;
    let open = |last: Option<u64>| {
        let request = WatchHandoffsRequest { agent: agent.clone(), after_cursor: last.or(after) };
        client.watch_handoffs(request)
    };
    let json = p.json;
    let out = &mut *p.out;
    follow(
        open,
        |e: &HandoffEvent| e.cursor,
        |e| {
            if json {
                return writeln!(out, "{}", to_json(e));
            }
            let h = e.handoff.clone().unwrap_or_default();
            let line = format!(
                "{:>6}  {:<9}  {}  {}  {} -> {}  {}  {}",
                e.cursor,
                render::event_type(e.r#type),
                h.handoff_id,
                h.session_key,
                h.from_agent,
                h.to_agent,
                render::handoff_status(h.status),
                render::time(h.updated_at.as_ref()),
            );
            writeln!(out, "{}", line.trim_end())
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_stop_at_the_limit_or_the_last_page() {
        // Three pages of up to 2 items: 1 2 | 3 4 | 5.
        let source = |size: u32, token: String| {
            let start: u32 = token.parse().unwrap_or(0);
            let end = (start + size.min(2)).min(5);
            let next = if end < 5 { end.to_string() } else { String::new() };
            std::future::ready(Ok(((start + 1..=end).collect::<Vec<_>>(), next)))
        };
        assert_eq!(pages(0, 1000, source).await.unwrap(), [1, 2, 3, 4, 5]);
        assert_eq!(pages(3, 1000, source).await.unwrap(), [1, 2, 3]);
        assert_eq!(pages(1, 1000, source).await.unwrap(), [1]);
        assert_eq!(pages(9, 1000, source).await.unwrap(), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn followed_entries_keep_fixed_columns() {
        let e = Entry { seq: 12, kind: 1, role: "user".into(), author: "planner".into(), ..Default::default() };
        assert_eq!(tail_line(&e, "hello"), "    12  -  message      user  planner  hello");
    }
}
