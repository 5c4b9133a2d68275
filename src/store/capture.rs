//! The capture tables: written by the writer thread, read by replay, export and serve.
//!
//! A session's output is stored as small index rows, one per frame (`capture_frames`:
//! session, seq, time offset, kind, length, block), and the bytes of many frames together in
//! compressed blocks (`capture_blocks`), so that an hour of a chatty agent costs a few
//! hundred rows and megabytes, not a row per 4 KiB read. `capture_sessions` holds one row per
//! captured session: where time offset 0 is, the terminal size, totals.
//!
//! Readers: [`info`] says whether (and how) a session was captured; [`frames`] iterates its
//! frames in order with their offsets, decoding one block at a time, so memory stays at one
//! block whatever the session's size; [`frames_from`] starts at a time offset. Nothing here
//! knows asciicast: `crate::cast` turns frames into files.

use std::collections::VecDeque;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use crate::capture::{self, Block, Frame, FrameMeta, Kind};

/// How the session's output was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Pipes: stdout and stderr, no terminal size of its own.
    Pipe,
    /// A pseudo-terminal: one `pty` stream and resizes.
    Pty,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Pipe => "pipe",
            Mode::Pty => "pty",
        }
    }

    fn parse(s: &str) -> Mode {
        if s == "pty" {
            Mode::Pty
        } else {
            Mode::Pipe
        }
    }
}

/// What the run path sends to the writer.
#[derive(Debug)]
pub enum Write {
    /// Capture begins: offsets count from `t0_us` (Unix microseconds).
    Start {
        t0_us: i64,
        mode: Mode,
        size: Option<(u16, u16)>,
    },
    Blocks(Vec<Block>),
}

/// A captured session, as [`info`] reads it.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureInfo {
    pub session_id: String,
    /// Unix microseconds of time offset 0 (the session's start).
    pub t0_us: i64,
    pub mode: Mode,
    /// The pty's size when capture began; `None` in pipe mode.
    pub cols: Option<u16>,
    pub rows: Option<u16>,
    pub frames: i64,
    /// Bytes of output stored (after masking), and what they take compressed.
    pub raw_bytes: i64,
    pub stored_bytes: i64,
    pub blocks: i64,
    /// Offset of the last frame, microseconds.
    pub duration_us: i64,
    /// Set when `prune --captures-older-than` dropped the bytes (the row stays).
    pub dropped_at: Option<String>,
}

/// Records that capture began for `session_id`.
pub fn start(
    conn: &Connection,
    session_id: &str,
    t0_us: i64,
    mode: Mode,
    size: Option<(u16, u16)>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO capture_sessions (session_id, t0_us, mode, cols, rows) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (session_id) DO NOTHING",
    )?
    .execute(params![
        session_id,
        t0_us,
        mode.as_str(),
        size.map(|s| s.0),
        size.map(|s| s.1)
    ])?;
    Ok(())
}

/// Stores blocks and their frames' index rows in one transaction, with the totals.
pub fn write_blocks(conn: &Connection, session_id: &str, blocks: &[Block]) -> rusqlite::Result<()> {
    if blocks.is_empty() {
        return Ok(());
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let (mut frames, mut raw, mut stored) = (0i64, 0i64, 0i64);
    let mut last_offset = 0i64;
    for b in blocks {
        let Some(first) = b.frames.first() else {
            continue;
        };
        tx.prepare_cached(
            "INSERT INTO capture_blocks (session_id, first_seq, frames, raw_len, codec, data) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            session_id,
            first.seq as i64,
            b.frames.len() as i64,
            b.raw_len as i64,
            b.codec,
            b.data
        ])?;
        let block_id = tx.last_insert_rowid();
        let mut ins = tx.prepare_cached(
            "INSERT INTO capture_frames (session_id, seq, offset_us, kind, len, block_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for f in &b.frames {
            ins.execute(params![
                session_id,
                f.seq as i64,
                f.offset_us as i64,
                f.kind.as_str(),
                f.len as i64,
                block_id
            ])?;
            last_offset = last_offset.max(f.offset_us as i64);
        }
        frames += b.frames.len() as i64;
        raw += b.raw_len as i64;
        stored += b.data.len() as i64;
    }
    tx.prepare_cached(
        "UPDATE capture_sessions SET frames = frames + ?2, raw_bytes = raw_bytes + ?3, \
         stored_bytes = stored_bytes + ?4, blocks = blocks + ?5, \
         duration_us = max(duration_us, ?6) WHERE session_id = ?1",
    )?
    .execute(params![
        session_id,
        frames,
        raw,
        stored,
        blocks.len() as i64,
        last_offset
    ])?;
    tx.commit()
}

/// A session's capture, or `None` if it was recorded without one.
pub fn info(conn: &Connection, session_id: &str) -> rusqlite::Result<Option<CaptureInfo>> {
    conn.query_row(
        "SELECT session_id, t0_us, mode, cols, rows, frames, raw_bytes, stored_bytes, blocks, \
         duration_us, dropped_at FROM capture_sessions WHERE session_id = ?1",
        [session_id],
        |r| {
            Ok(CaptureInfo {
                session_id: r.get("session_id")?,
                t0_us: r.get("t0_us")?,
                mode: Mode::parse(&r.get::<_, String>("mode")?),
                cols: r.get("cols")?,
                rows: r.get("rows")?,
                frames: r.get("frames")?,
                raw_bytes: r.get("raw_bytes")?,
                stored_bytes: r.get("stored_bytes")?,
                blocks: r.get("blocks")?,
                duration_us: r.get("duration_us")?,
                dropped_at: r.get("dropped_at")?,
            })
        },
    )
    .optional()
}

/// The index rows of a session's frames, in order (no bytes read).
pub fn index(conn: &Connection, session_id: &str) -> rusqlite::Result<Vec<FrameMeta>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, offset_us, kind, len FROM capture_frames WHERE session_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([session_id], meta_from_row)?;
    rows.collect()
}

fn meta_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FrameMeta> {
    let kind: String = r.get("kind")?;
    Ok(FrameMeta {
        seq: r.get::<_, i64>("seq")? as u64,
        offset_us: r.get::<_, i64>("offset_us")? as u64,
        kind: Kind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown capture frame kind {kind:?}").into(),
            )
        })?,
        len: r.get::<_, i64>("len")? as usize,
    })
}

/// Why reading frames failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Codec(#[from] capture::CodecError),
}

/// A session's frames in order, one block decoded at a time.
pub struct Frames<'c> {
    conn: &'c Connection,
    session_id: String,
    /// Block ids still to read, with where in them to start (`from_seq`).
    blocks: VecDeque<i64>,
    from_seq: u64,
    ready: VecDeque<Frame>,
}

/// Every frame of `session_id`.
pub fn frames<'c>(conn: &'c Connection, session_id: &str) -> rusqlite::Result<Frames<'c>> {
    frames_from(conn, session_id, 0)
}

/// The frames of `session_id` from time offset `from_us` on.
pub fn frames_from<'c>(
    conn: &'c Connection,
    session_id: &str,
    from_us: u64,
) -> rusqlite::Result<Frames<'c>> {
    let from_seq: Option<(i64, i64)> = conn
        .query_row(
            "SELECT seq, block_id FROM capture_frames WHERE session_id = ?1 AND offset_us >= ?2 \
             ORDER BY seq LIMIT 1",
            params![session_id, from_us as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((from_seq, first_block)) = from_seq else {
        return Ok(Frames {
            conn,
            session_id: session_id.to_string(),
            blocks: VecDeque::new(),
            from_seq: 0,
            ready: VecDeque::new(),
        });
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM capture_blocks WHERE session_id = ?1 AND id >= ?2 ORDER BY first_seq",
    )?;
    let blocks = stmt
        .query_map(params![session_id, first_block], |r| r.get(0))?
        .collect::<rusqlite::Result<VecDeque<i64>>>()?;
    Ok(Frames {
        conn,
        session_id: session_id.to_string(),
        blocks,
        from_seq: from_seq as u64,
        ready: VecDeque::new(),
    })
}

impl Frames<'_> {
    fn load(&mut self, block_id: i64) -> Result<(), ReadError> {
        let (codec, raw_len, data): (String, i64, Vec<u8>) = self.conn.query_row(
            "SELECT codec, raw_len, data FROM capture_blocks WHERE id = ?1",
            [block_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let raw = capture::decode(&codec, &data, raw_len.max(0) as usize)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, offset_us, kind, len FROM capture_frames \
             WHERE session_id = ?1 AND block_id = ?2 ORDER BY seq",
        )?;
        let metas = stmt
            .query_map(params![self.session_id, block_id], meta_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let from = self.from_seq;
        self.ready.extend(
            capture::split_block(&metas, &raw)?
                .into_iter()
                .filter(|f| f.seq >= from),
        );
        Ok(())
    }
}

impl Iterator for Frames<'_> {
    type Item = Result<Frame, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(f) = self.ready.pop_front() {
                return Some(Ok(f));
            }
            let id = self.blocks.pop_front()?;
            if let Err(e) = self.load(id) {
                self.blocks.clear();
                return Some(Err(e));
            }
        }
    }
}

/// Capture sizes over the whole database (for `stats` and `db check`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sizes {
    pub sessions: i64,
    pub frames: i64,
    pub raw_bytes: i64,
    pub stored_bytes: i64,
}

pub fn sizes(conn: &Connection) -> rusqlite::Result<Sizes> {
    conn.query_row(
        "SELECT count(*), coalesce(sum(frames), 0), coalesce(sum(raw_bytes), 0), \
         coalesce(sum(stored_bytes), 0) FROM capture_sessions WHERE dropped_at IS NULL",
        [],
        |r| {
            Ok(Sizes {
                sessions: r.get(0)?,
                frames: r.get(1)?,
                raw_bytes: r.get(2)?,
                stored_bytes: r.get(3)?,
            })
        },
    )
}

/// Compressed bytes stored for the sessions that `doomed` (a fixed SQL condition on
/// `session_id`) selects.
pub(crate) fn stored_where(conn: &Connection, doomed: &str) -> rusqlite::Result<i64> {
    conn.query_row(
        &format!("SELECT coalesce(sum(stored_bytes), 0) FROM capture_sessions WHERE {doomed}"),
        [],
        |r| r.get(0),
    )
}

/// Deletes the capture of the sessions that `doomed` selects, inside the caller's
/// transaction.
pub(crate) fn delete_where(conn: &Connection, doomed: &str) -> rusqlite::Result<()> {
    for table in ["capture_frames", "capture_blocks", "capture_sessions"] {
        conn.execute(&format!("DELETE FROM {table} WHERE {doomed}"), [])?;
    }
    Ok(())
}

/// What `prune --captures-older-than` dropped (or, dry, would drop).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DropReport {
    pub sessions: Vec<String>,
    pub stored_bytes: i64,
    pub dry_run: bool,
}

/// Drops the bytes (frames and blocks) of ended sessions that started before `cutoff`,
/// keeping their events and a `capture_sessions` row marked `dropped_at`.
pub fn drop_older_than(
    conn: &Connection,
    cutoff: &str,
    final_states: &str,
    dry_run: bool,
) -> rusqlite::Result<DropReport> {
    let tx = super::retention_transaction(conn, dry_run)?;
    let sql = format!(
        "SELECT c.session_id, c.stored_bytes FROM capture_sessions c \
         JOIN process_sessions s ON s.session_id = c.session_id \
         WHERE c.dropped_at IS NULL AND s.started_at < ?1 AND s.state IN {final_states} \
         ORDER BY s.started_at"
    );
    let rows: Vec<(String, i64)> = tx
        .prepare(&sql)?
        .query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut report = DropReport {
        stored_bytes: rows.iter().map(|r| r.1).sum(),
        sessions: rows.into_iter().map(|r| r.0).collect(),
        dry_run,
    };
    if !dry_run {
        for s in &report.sessions {
            tx.execute("DELETE FROM capture_frames WHERE session_id = ?1", [s])?;
            tx.execute("DELETE FROM capture_blocks WHERE session_id = ?1", [s])?;
            tx.execute(
                "UPDATE capture_sessions SET dropped_at = ?2, frames = 0, raw_bytes = 0, \
                 stored_bytes = 0, blocks = 0 WHERE session_id = ?1",
                params![s, crate::event::now_timestamp()],
            )?;
        }
    }
    tx.commit()?;
    report.dry_run = dry_run;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Encoder, Masker, BLOCK_TARGET};
    use crate::event::Stream;
    use std::time::{Duration, SystemTime};

    #[test]
    fn frames_round_trip_across_blocks_and_from_an_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = crate::store::open(&dir.path().join("c.db"), crate::store::OpenMode::Create)
            .expect("open");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        start(&conn, "s", 1_700_000_000_000_000, Mode::Pipe, None).expect("start");
        let mut enc = Encoder::new(Masker::off(), t0);
        let line = vec![b'x'; 1000];
        let mut sent = Vec::new();
        // Enough for several blocks.
        for i in 0..(3 * BLOCK_TARGET / 1000) {
            let mut l = line.clone();
            l.extend_from_slice(format!(" {i}\n").as_bytes());
            enc.output(Stream::Stdout, &l, t0 + Duration::from_millis(i as u64));
            sent.push(l);
            write_blocks(&conn, "s", &enc.take()).expect("write");
        }
        write_blocks(&conn, "s", &enc.finish()).expect("write");
        let got: Vec<Frame> = frames(&conn, "s")
            .expect("frames")
            .collect::<Result<_, _>>()
            .expect("read");
        assert_eq!(got.len(), sent.len());
        assert!(got.iter().zip(&sent).all(|(f, s)| &f.data == s));
        let i = info(&conn, "s").expect("info").expect("captured");
        assert!(i.blocks >= 3, "{} blocks", i.blocks);
        assert_eq!(i.frames as usize, sent.len());
        assert_eq!(
            i.raw_bytes as usize,
            sent.iter().map(Vec::len).sum::<usize>()
        );
        let from: Vec<Frame> = frames_from(&conn, "s", 500_000)
            .expect("frames")
            .collect::<Result<_, _>>()
            .expect("read");
        assert_eq!(from.first().map(|f| f.offset_us), Some(500_000));
        assert_eq!(from.len(), sent.len() - 500);
        assert!(info(&conn, "nope").expect("info").is_none());
        assert_eq!(index(&conn, "s").expect("index").len(), sent.len());
    }
}
