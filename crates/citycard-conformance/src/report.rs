//! Reports: text for people, JSON for programs, JUnit XML for CI systems.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// Version of the JSON report's layout.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// The outcome of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The card answered as the spec says.
    Pass,
    /// It did not.
    Fail,
    /// Not run (an earlier step broke the link, or the step does not apply).
    Skipped,
}

/// One step of a report.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    /// Step id (`section.name`).
    pub id: String,
    /// Spec section(s).
    pub spec: String,
    /// Outcome.
    pub outcome: Outcome,
    /// What the spec expects.
    pub expected: String,
    /// What the card (or reader) did.
    pub observed: String,
    /// Wall time of the step, milliseconds.
    pub millis: f64,
}

/// Round-trip times of one command.
#[derive(Clone, Debug, Serialize)]
pub struct CommandTiming {
    /// Command name.
    pub command: String,
    /// APDUs sent.
    pub count: usize,
    /// Fastest, milliseconds.
    pub min_ms: f64,
    /// Median, milliseconds.
    pub median_ms: f64,
    /// Slowest, milliseconds.
    pub max_ms: f64,
}

/// A whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// [`REPORT_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `card`, `vector` or `reader`.
    pub kit: String,
    /// The spec version checked.
    pub spec_version: u8,
    /// What was tested (reader name, command).
    pub target: String,
    /// Every step, in order.
    pub steps: Vec<StepReport>,
    /// Per-command timing (card kit).
    pub timing: Vec<CommandTiming>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

impl Report {
    /// An empty report.
    pub fn new(kit: &str, spec_version: u8, target: &str) -> Self {
        Self {
            schema_version: REPORT_SCHEMA_VERSION,
            kit: kit.into(),
            spec_version,
            target: target.into(),
            steps: Vec::new(),
            timing: Vec::new(),
        }
    }

    /// Appends a step.
    pub fn push(
        &mut self,
        id: &str,
        spec: &str,
        outcome: Outcome,
        expected: String,
        observed: String,
        elapsed: Duration,
    ) {
        self.steps.push(StepReport {
            id: id.into(),
            spec: spec.into(),
            outcome,
            expected,
            observed,
            millis: ms(elapsed),
        });
    }

    /// `true` when no step failed and at least one passed.
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.outcome != Outcome::Fail)
            && self.steps.iter().any(|s| s.outcome == Outcome::Pass)
    }

    /// The first failed step.
    pub fn first_failure(&self) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.outcome == Outcome::Fail)
    }

    /// Counts of (pass, fail, skipped).
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |o| self.steps.iter().filter(|s| s.outcome == o).count();
        (n(Outcome::Pass), n(Outcome::Fail), n(Outcome::Skipped))
    }

    /// Fills the timing table from `(command name, round trip)` samples.
    pub fn set_timing(&mut self, samples: impl IntoIterator<Item = (String, Duration)>) {
        let mut by: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
        for (name, d) in samples {
            by.entry(name).or_default().push(d);
        }
        self.timing = by
            .into_iter()
            .filter_map(|(command, mut v)| {
                v.sort_unstable();
                Some(CommandTiming {
                    command,
                    count: v.len(),
                    min_ms: ms(*v.first()?),
                    median_ms: ms(*v.get(v.len() / 2)?),
                    max_ms: ms(*v.last()?),
                })
            })
            .collect();
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "citycard conformance {} — spec version {} — {}",
            self.kit, self.spec_version, self.target
        );
        for s in &self.steps {
            let tag = match s.outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::Skipped => "SKIP",
            };
            let _ = writeln!(
                out,
                "{tag}  {:<48} {:<14} {:>9.3} ms",
                s.id, s.spec, s.millis
            );
            if s.outcome != Outcome::Pass {
                let _ = writeln!(out, "      expected: {}", s.expected);
                let _ = writeln!(out, "      observed: {}", s.observed);
            }
        }
        if !self.timing.is_empty() {
            let _ = writeln!(out, "timing per command (ms):");
            for t in &self.timing {
                let _ = writeln!(
                    out,
                    "  {:<28} n={:<4} min {:>8.3}  median {:>8.3}  max {:>8.3}",
                    t.command, t.count, t.min_ms, t.median_ms, t.max_ms
                );
            }
        }
        let (pass, fail, skip) = self.counts();
        let _ = writeln!(
            out,
            "{}: {pass} passed, {fail} failed, {skip} skipped",
            if self.passed() {
                "CONFORMS"
            } else {
                "DOES NOT CONFORM"
            }
        );
        out
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// The report as JUnit XML (one test case per step).
    pub fn to_junit(&self) -> String {
        let (_, fail, skip) = self.counts();
        let total: f64 = self.steps.iter().map(|s| s.millis).sum::<f64>() / 1000.0;
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let suite = format!("citycard-conformance-{}", self.kit);
        let _ = writeln!(
            out,
            "<testsuites><testsuite name=\"{}\" tests=\"{}\" failures=\"{fail}\" errors=\"0\" skipped=\"{skip}\" time=\"{total:.3}\">",
            xml(&suite),
            self.steps.len()
        );
        let _ = writeln!(
            out,
            "<properties><property name=\"spec_version\" value=\"{}\"/><property name=\"target\" value=\"{}\"/></properties>",
            self.spec_version,
            xml(&self.target)
        );
        for s in &self.steps {
            let _ = write!(
                out,
                "<testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
                xml(&suite),
                xml(&s.id),
                s.millis / 1000.0
            );
            match s.outcome {
                Outcome::Pass => {}
                Outcome::Fail => {
                    let _ = write!(
                        out,
                        "<failure message=\"{}\">expected: {}\nobserved: {}\nspec: {}</failure>",
                        xml(&s.observed),
                        xml(&s.expected),
                        xml(&s.observed),
                        xml(&s.spec)
                    );
                }
                Outcome::Skipped => {
                    let _ = write!(out, "<skipped message=\"{}\"/>", xml(&s.observed));
                }
            }
            let _ = writeln!(out, "</testcase>");
        }
        out.push_str("</testsuite></testsuites>\n");
        out
    }
}

/// Escapes text for XML attributes and content. (Five replacements: a whole
/// XML writer crate would add nothing for this fixed, flat document.)
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push_str("&#xFFFD;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn junit_escapes_and_counts() {
        let mut r = Report::new("card", 1, "Reader <\"A\"> & co");
        r.push(
            "a.ok",
            "§1",
            Outcome::Pass,
            "x".into(),
            "x".into(),
            Duration::from_millis(2),
        );
        r.push(
            "a.bad",
            "§2",
            Outcome::Fail,
            "9000".into(),
            "6A80 <bad>".into(),
            Duration::ZERO,
        );
        let x = r.to_junit();
        assert!(x.contains("tests=\"2\" failures=\"1\""));
        assert!(x.contains("Reader &lt;&quot;A&quot;&gt; &amp; co"));
        assert!(x.contains("<failure message=\"6A80 &lt;bad&gt;\">"));
        assert!(!r.passed());
        assert_eq!(r.first_failure().unwrap().id, "a.bad");
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["steps"][1]["outcome"], "fail");
        assert_eq!(json["schema_version"], 1);
    }
}
