//! The `watch` screen as a pure function of [`WatchState`], so that it can be tested on a
//! `TestBackend` without a terminal or a bus. `watch.rs` fills the state; this draws it.

use std::collections::VecDeque;
use std::time::Instant;

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline};
use ratatui::Frame;

use crate::activity::LastPublish;
use crate::text;

/// Samples of the message rate kept for the sparkline.
pub(crate) const HISTORY: usize = 240;

/// Everything the screen shows. Strings are stored as read; the renderer escapes them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WatchState {
    pub(crate) name: String,
    pub(crate) slots: u64,
    pub(crate) capacity: usize,
    pub(crate) message_type: String,
    pub(crate) producer_mode: &'static str,
    /// Next sequence number a producer will claim.
    pub(crate) cursor: u64,
    /// Messages published since creation.
    pub(crate) published: u64,
    pub(crate) msgs_per_sec: f64,
    /// Estimated from the lengths of sampled messages; `None` until one was sampled.
    pub(crate) bytes_per_sec: Option<f64>,
    /// Message rate per sample period, oldest first.
    pub(crate) history: VecDeque<u64>,
    /// When the cursor last moved, as sampled every frame.
    pub(crate) last_publish: LastPublish,
    pub(crate) producers: usize,
    pub(crate) creator_pid: u32,
    pub(crate) creator_alive: bool,
    /// Messages the sampling subscriber skipped (it samples; losing some is expected).
    pub(crate) sampler_lost: u64,
    /// A records segment's ring; `None` for a bus.
    pub(crate) records: Option<RecordsShape>,
    /// The shape line of a kind with its own (lanes), in place of the bus's or records'.
    pub(crate) shape_text: Option<String>,
    /// Payload bytes published since creation, where the segment counts them (records): the
    /// byte rate is then exact.
    pub(crate) bytes_published: Option<u64>,
    /// The longest-held position seen at more than one look (a queue's or a multi-producer
    /// bus's stalled participant), as `stalls::watch_line` says it; `None`: nothing held.
    pub(crate) stalled: Option<String>,
    /// Where the last rate sample was taken: (when, cursor, bytes published).
    last: Option<(Instant, u64, Option<u64>)>,
    /// Mean length of the messages sampled so far, for the byte rate.
    mean_len: Option<f64>,
}

impl WatchState {
    pub(crate) fn new(
        name: &str,
        slots: u64,
        capacity: usize,
        message_type: &str,
        producer_mode: &'static str,
    ) -> Self {
        WatchState {
            name: name.to_owned(),
            slots,
            capacity,
            message_type: message_type.to_owned(),
            producer_mode,
            cursor: 0,
            published: 0,
            msgs_per_sec: 0.0,
            bytes_per_sec: None,
            history: VecDeque::with_capacity(HISTORY),
            last_publish: LastPublish::default(),
            producers: 0,
            creator_pid: 0,
            creator_alive: false,
            sampler_lost: 0,
            records: None,
            shape_text: None,
            bytes_published: None,
            stalled: None,
            last: None,
            mean_len: None,
        }
    }

    /// The state of a records segment: a byte ring of `ring_bytes` whose records are at most
    /// `max_record` bytes.
    pub(crate) fn for_records(name: &str, ring_bytes: u64, max_record: usize) -> Self {
        let mut s = WatchState::new(name, 1, max_record, "bytes", "single");
        s.records = Some(RecordsShape {
            ring_bytes,
            max_record,
        });
        s
    }

    /// The state of a lanes segment: `lanes` lanes of `lane_bytes`; its byte count is what
    /// the lanes' write positions moved (records with their headers).
    pub(crate) fn for_lanes(name: &str, lanes: u32, lane_bytes: u64, max_record: usize) -> Self {
        let mut s = WatchState::for_records(name, lane_bytes, max_record);
        s.producer_mode = "lanes";
        s.shape_text = Some(format!(
            "{lanes} lanes of {lane_bytes} B, records up to {max_record} B"
        ));
        s
    }

    /// Takes a rate sample: the cursor at `now`, and `sampled` messages totalling
    /// `sampled_bytes` that the sampling subscriber received since the previous sample.
    /// The message rate is the cursor's advance over the elapsed time; the byte rate is the
    /// advance of [`WatchState::bytes_published`] where the segment counts bytes, else the
    /// message rate times the mean sampled length (the last known mean when nothing was
    /// sampled).
    pub(crate) fn sample(&mut self, now: Instant, cursor: u64, sampled: u64, sampled_bytes: u64) {
        if sampled > 0 {
            self.mean_len = Some(sampled_bytes as f64 / sampled as f64);
        }
        if let Some((then, c0, b0)) = self.last {
            let dt = now.saturating_duration_since(then).as_secs_f64();
            if dt > 0.0 {
                self.msgs_per_sec = cursor.saturating_sub(c0) as f64 / dt;
                self.bytes_per_sec = match (b0, self.bytes_published) {
                    (Some(b0), Some(b1)) => Some(b1.saturating_sub(b0) as f64 / dt),
                    _ => self.mean_len.map(|l| l * self.msgs_per_sec),
                };
                if self.history.len() == HISTORY {
                    self.history.pop_front();
                }
                self.history.push_back(self.msgs_per_sec.round() as u64);
            }
        }
        self.last = Some((now, cursor, self.bytes_published));
        self.cursor = cursor;
    }
}

/// The shape of a records segment, as the screen shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordsShape {
    pub(crate) ring_bytes: u64,
    pub(crate) max_record: usize,
}

fn label(s: &str) -> Span<'_> {
    Span::styled(format!("{s:<14}"), Style::default().fg(Color::Cyan))
}

/// Draws the whole screen.
pub(crate) fn render(frame: &mut Frame<'_>, s: &WatchState) {
    let [stats_area, spark_area, help_area] = Layout::vertical([
        Constraint::Length(10),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let liveness = if s.producers > 0 {
        Span::styled(
            format!("{} live", s.producers),
            Style::default().fg(Color::Green),
        )
    } else {
        Span::styled("none alive", Style::default().fg(Color::Yellow))
    };
    let creator = format!(
        "pid {} ({})",
        s.creator_pid,
        if s.creator_alive { "alive" } else { "gone" }
    );
    let unit = if s.records.is_some() {
        "records/s"
    } else {
        "messages/s"
    };
    let rates = Line::from(vec![
        label(unit),
        Span::styled(format!("{:<12}", text::rate(s.msgs_per_sec)), bold),
        label("bytes/s"),
        Span::styled(
            s.bytes_per_sec
                .map_or("-".into(), |b| format!("{}/s", text::bytes(b as u64))),
            bold,
        ),
    ]);
    let counts = match s.bytes_published {
        Some(bytes) => Line::from(vec![
            label("records"),
            Span::raw(format!("{:<12}", s.cursor)),
            label("bytes"),
            Span::raw(format!("{bytes} ({})", text::bytes(bytes))),
        ]),
        None => Line::from(vec![
            label("cursor"),
            Span::raw(format!("{:<12}", s.cursor)),
            label("published"),
            Span::raw(s.published.to_string()),
        ]),
    };
    let shape = match (&s.shape_text, s.records) {
        (Some(t), _) => t.clone(),
        (None, Some(r)) => format!(
            "{} byte ring, records up to {} B",
            r.ring_bytes, r.max_record
        ),
        (None, None) => format!(
            "{} slots x {} B, type {}",
            s.slots,
            s.capacity,
            text::sanitize(&s.message_type)
        ),
    };
    let lines = vec![
        rates,
        counts,
        Line::from(vec![
            label("last publish"),
            Span::raw(match s.last_publish.display() {
                never if s.last_publish.min_ns_ago.is_none() => never,
                before if s.last_publish.max_ns_ago.is_none() => {
                    format!(
                        "{} ago (none since watch began)",
                        before.replace('>', "over ")
                    )
                }
                d => format!("{d} ago"),
            }),
        ]),
        Line::from(vec![
            label("producers"),
            liveness,
            Span::raw(format!("  ({} producer)", s.producer_mode)),
        ]),
        Line::from(vec![label("creator"), Span::raw(creator)]),
        Line::from(vec![label("ring"), Span::raw(shape)]),
        Line::from(vec![
            label("sampler lost"),
            Span::raw(s.sampler_lost.to_string()),
        ]),
        Line::from(vec![
            label("stalled"),
            match &s.stalled {
                Some(line) => Span::styled(line.clone(), Style::default().fg(Color::Yellow)),
                None => Span::raw("none"),
            },
        ]),
    ];
    let title = format!(" shmbus watch: {} ", text::sanitize(&s.name));
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)),
        stats_area,
    );
    // The newest samples that fit, right-aligned like a scrolling chart.
    let width = spark_area.width.saturating_sub(2) as usize;
    let data: Vec<u64> = s
        .history
        .iter()
        .skip(s.history.len().saturating_sub(width))
        .copied()
        .collect();
    let peak = data.iter().copied().max().unwrap_or(0);
    let spark = Sparkline::default()
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" {unit}, peak {} ", text::rate(peak as f64))),
        )
        .style(Style::default().fg(Color::Green))
        .data(&data);
    frame.render_widget(spark, spark_area);
    frame.render_widget(Paragraph::new(" q quit"), help_area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use std::time::Duration;

    fn screen(s: &WatchState) -> String {
        let mut t = Terminal::new(TestBackend::new(80, 20)).unwrap();
        t.draw(|f| render(f, s)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn state() -> WatchState {
        let mut s = WatchState::new("prices", 1024, 240, "bytes", "single");
        s.published = 4200;
        s.producers = 1;
        s.creator_pid = 77;
        s.creator_alive = true;
        s.last_publish = LastPublish {
            min_ns_ago: Some(120_000_000),
            max_ns_ago: Some(220_000_000),
            per_s: None,
        };
        s
    }

    #[test]
    fn rates_come_from_cursor_deltas_and_sampled_lengths() {
        let mut s = state();
        let t0 = Instant::now();
        s.sample(t0, 1000, 0, 0);
        assert_eq!(
            (s.msgs_per_sec, s.bytes_per_sec),
            (0.0, None),
            "one sample is not a rate"
        );
        s.sample(t0 + Duration::from_secs(2), 5000, 10, 640);
        assert_eq!(s.msgs_per_sec, 2000.0);
        assert_eq!(s.bytes_per_sec, Some(2000.0 * 64.0));
        assert_eq!(s.history, [2000]);
        // Nothing sampled this time: the byte rate keeps the last known mean length.
        s.sample(t0 + Duration::from_secs(3), 5500, 0, 0);
        assert_eq!(
            (s.msgs_per_sec, s.bytes_per_sec),
            (500.0, Some(500.0 * 64.0))
        );
        assert_eq!(s.cursor, 5500);
    }

    #[test]
    fn history_is_bounded() {
        let mut s = state();
        let t0 = Instant::now();
        for i in 0..(HISTORY as u64 + 10) {
            s.sample(t0 + Duration::from_secs(i), i * 3, 0, 0);
        }
        assert_eq!(s.history.len(), HISTORY);
    }

    #[test]
    fn screen_shows_labels_and_values() {
        let mut s = state();
        let t0 = Instant::now();
        s.sample(t0, 0, 0, 0);
        s.sample(t0 + Duration::from_secs(1), 12_300, 100, 4800);
        let out = screen(&s);
        for want in [
            "shmbus watch: prices",
            "messages/s",
            "12.3k",
            "bytes/s",
            "576.6 KiB/s",
            "cursor",
            "12300",
            "published",
            "4200",
            "last publish",
            "120ms ago",
            "1 live",
            "single producer",
            "pid 77 (alive)",
            "1024 slots x 240 B, type bytes",
            "peak 12.3k",
            "q quit",
        ] {
            assert!(out.contains(want), "screen lacks {want:?}:\n{out}");
        }
    }

    #[test]
    fn a_records_screen_shows_its_ring_its_counts_and_exact_byte_rates() {
        let mut s = WatchState::for_records("log", 8192, 2032);
        let t0 = Instant::now();
        s.bytes_published = Some(1000);
        s.sample(t0, 10, 0, 0);
        s.bytes_published = Some(5000);
        s.sampler_lost = 3;
        // The sampled lengths (3 of 100 bytes) do not enter the byte rate: the total does.
        s.sample(t0 + Duration::from_secs(2), 30, 3, 300);
        assert_eq!((s.msgs_per_sec, s.bytes_per_sec), (10.0, Some(2000.0)));
        let out = screen(&s);
        for want in [
            "records/s",
            "records       30",
            "bytes         5000 (4.9 KiB)",
            "8192 byte ring, records up to 2032 B",
            "sampler lost  3",
            "2.0 KiB/s",
        ] {
            assert!(out.contains(want), "screen lacks {want:?}:\n{out}");
        }
        assert!(!out.contains("messages/s"), "{out}");
    }

    #[test]
    fn last_publish_comes_from_the_sampled_cursor_on_records_and_buses_alike() {
        let mut s = WatchState::for_records("log", 8192, 2032);
        s.last_publish = LastPublish {
            min_ns_ago: Some(0),
            max_ns_ago: Some(100_000_000),
            per_s: Some(16.0),
        };
        assert!(
            screen(&s).contains("last publish  <100ms ago"),
            "{}",
            screen(&s)
        );
        s.last_publish = LastPublish {
            min_ns_ago: Some(5_000_000_000),
            max_ns_ago: None,
            per_s: Some(0.0),
        };
        let out = screen(&s);
        assert!(
            out.contains("last publish  over 5.0s ago (none since watch began)"),
            "{out}"
        );
        // A live producer's stamp plays no part: a fresh state shows nothing was seen yet.
        let fresh = WatchState::for_records("log", 8192, 2032);
        assert!(screen(&fresh).contains("last publish  -"));
        let mut a = crate::activity::Activity::default();
        let t0 = Instant::now();
        a.observe("", 3, t0);
        s.last_publish = a.observe("", 4, t0 + Duration::from_millis(100));
        assert!(screen(&s).contains("last publish  <100ms ago"));
    }

    #[test]
    fn screen_shows_the_longest_stall_or_none() {
        let mut s = state();
        assert!(screen(&s).contains("stalled       none"), "{}", screen(&s));
        s.stalled =
            Some("pid 9 sender #2 holds position 5 (claimed, not published) for 3.0s".into());
        let out = screen(&s);
        assert!(
            out.contains("stalled       pid 9 sender #2 holds position 5 (claimed, not publish"),
            "{out}"
        );
    }

    #[test]
    fn screen_says_when_nothing_is_alive_and_escapes_segment_strings() {
        let mut s = WatchState::new("x", 8, 64, "evil\u{1b}]0;pwned\u{7}", "multi");
        s.creator_pid = 5;
        let out = screen(&s);
        assert!(out.contains("none alive"), "{out}");
        assert!(out.contains("pid 5 (gone)"), "{out}");
        assert!(out.contains("bytes/s       -"), "{out}");
        assert!(out.contains("evil\\x1b]0;pwned\\x07"), "{out}");
        assert!(!out.contains('\u{1b}'), "{out}");
    }
}
