//! What a session costs: token prices per model, and budgets that end a session.
//!
//! A [`PriceTable`] maps model names to [`ModelPrices`] (US dollars per million tokens). The
//! built-in table ([`PriceTable::new`]) holds OpenAI's list prices **as of
//! [`PRICES_AS_OF`] (2026-11-30)**, read from the model pages on developers.openai.com:
//!
//! | model | text in | cached in | audio in | text out | audio out |
//! | --- | ---: | ---: | ---: | ---: | ---: |
//! | `gpt-realtime`, `gpt-realtime-1.5` | 4.00 | 0.40 | 32.00 | 16.00 | 64.00 |
//! | `gpt-realtime-2` | 4.00 | 0.40 | 32.00 | 24.00 | 64.00 |
//! | `gpt-realtime-mini`, `gpt-realtime-2.1-mini` | 0.60 | 0.30 | 10.00 | 2.40 | 20.00 |
//!
//! Prices change: override or add entries with [`PriceTable::with`] and give the table to
//! the runner with [`RealtimeRunConfig::prices`](crate::RealtimeRunConfig::prices).
//! Dated snapshots (`gpt-realtime-2025-08-28`) are priced as their model.
//!
//! The usage the server reports does not split cached tokens into text and audio, so there is
//! one cached-input price: where a model prices them differently (the mini models: $0.06 text,
//! $0.30 audio) the table holds the higher one, and cached tokens are counted as text input
//! first (the cached prefix of a conversation is its instructions and oldest turns), which
//! leaves more of the dearer audio uncached. Costs are therefore an upper estimate, never
//! below the bill for the tokens reported; input transcription (billed by its own model) is
//! not included.
//!
//! The GPT-Live models (`gpt-live-1`, `gpt-live-1.1`) are billed per minute of active session
//! ($0.05/min), not per token, so they have no entry here.
//!
//! A [`Budget`] caps what one session may spend, in tokens or in dollars
//! ([`RealtimeRunConfig::budget`](crate::RealtimeRunConfig::budget)); [`exceeded`] is the
//! check.
//!
//! ```
//! use realtime_agents::cost::{Budget, ModelPrices, PriceTable, exceeded};
//! use realtime_agents::model::Usage;
//!
//! let mut usage = Usage::default();
//! usage.input_tokens = 1_000_000;
//! usage.input_audio_tokens = 1_000_000;
//! usage.total_tokens = 1_000_000;
//! let prices = PriceTable::new();
//! assert_eq!(usage.cost_usd(&prices, "gpt-realtime"), Some(32.0));
//! assert!(exceeded(&Budget::usd(10.0), &usage, &prices, "gpt-realtime").is_some());
//! assert!(exceeded(&Budget::tokens(2_000_000), &usage, &prices, "gpt-realtime").is_none());
//!
//! // Your own prices, e.g. a negotiated rate or a model the table does not know.
//! let prices = PriceTable::new().with("my-realtime", ModelPrices::new(1.0, 0.1, 8.0, 4.0, 16.0));
//! assert_eq!(usage.cost_usd(&prices, "my-realtime"), Some(8.0));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::model::Usage;

/// The date the built-in prices were read from OpenAI's model pages.
///
/// ```
/// assert_eq!(realtime_agents::cost::PRICES_AS_OF, "2026-11-30");
/// ```
pub const PRICES_AS_OF: &str = "2026-11-30";

/// The prices of one model, in US dollars per million tokens.
///
/// ```
/// use realtime_agents::cost::ModelPrices;
/// use realtime_agents::model::Usage;
///
/// let prices = ModelPrices::new(4.0, 0.4, 32.0, 16.0, 64.0);
/// let mut usage = Usage::default();
/// usage.output_tokens = 500_000;
/// usage.output_audio_tokens = 500_000;
/// assert_eq!(prices.cost_usd(&usage), 32.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelPrices {
    /// Text input (instructions, typed messages, transcripts replayed as text).
    pub text_input: f64,
    /// Input served from the prompt cache, text or audio.
    pub cached_input: f64,
    /// Audio input.
    pub audio_input: f64,
    /// Text output (including the transcript of spoken output).
    pub text_output: f64,
    /// Audio output.
    pub audio_output: f64,
}

impl ModelPrices {
    /// Prices in dollars per million tokens, in the order of the fields.
    pub const fn new(
        text_input: f64,
        cached_input: f64,
        audio_input: f64,
        text_output: f64,
        audio_output: f64,
    ) -> Self {
        Self {
            text_input,
            cached_input,
            audio_input,
            text_output,
            audio_output,
        }
    }

    /// What `usage` costs at these prices, in dollars (see the [module docs](self) for how
    /// cached tokens are counted).
    pub fn cost_usd(&self, usage: &Usage) -> f64 {
        let audio_in = usage.input_audio_tokens.min(usage.input_tokens);
        let text_in = usage.input_tokens - audio_in;
        let cached = usage.cached_tokens.min(usage.input_tokens);
        // Cached tokens come off the text first; what is left comes off the audio.
        let uncached_text = text_in.saturating_sub(cached);
        let uncached_audio = audio_in.saturating_sub(cached.saturating_sub(text_in));
        let audio_out = usage.output_audio_tokens.min(usage.output_tokens);
        let text_out = usage.output_tokens - audio_out;
        let dollars = uncached_text as f64 * self.text_input
            + cached as f64 * self.cached_input
            + uncached_audio as f64 * self.audio_input
            + text_out as f64 * self.text_output
            + audio_out as f64 * self.audio_output;
        dollars / 1_000_000.0
    }
}

/// Prices per model name ([module docs](self): the built-in entries and their date).
///
/// ```
/// use realtime_agents::cost::{ModelPrices, PriceTable};
///
/// let table = PriceTable::new();
/// assert_eq!(table.get("gpt-realtime-mini").map(|p| p.audio_output), Some(20.0));
/// // A dated snapshot is priced as its model.
/// assert_eq!(table.get("gpt-realtime-2025-08-28"), table.get("gpt-realtime"));
/// assert!(table.get("my-model").is_none());
/// assert!(PriceTable::empty().get("gpt-realtime").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceTable {
    /// Shared: every session keeps its runner's table, and copies would cost each one about a
    /// kilobyte and a half.
    models: Arc<BTreeMap<String, ModelPrices>>,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self::new()
    }
}

impl PriceTable {
    /// The built-in table: OpenAI's Realtime models at their prices as of [`PRICES_AS_OF`].
    pub fn new() -> Self {
        let full = ModelPrices::new(4.0, 0.4, 32.0, 16.0, 64.0);
        let mini = ModelPrices::new(0.6, 0.3, 10.0, 2.4, 20.0);
        Self::empty()
            .with("gpt-realtime", full)
            .with("gpt-realtime-1.5", full)
            .with(
                "gpt-realtime-2",
                ModelPrices {
                    text_output: 24.0,
                    ..full
                },
            )
            .with("gpt-realtime-mini", mini)
            .with("gpt-realtime-2.1-mini", mini)
    }

    /// A table with no entries.
    pub fn empty() -> Self {
        Self {
            models: Arc::default(),
        }
    }

    /// Sets the prices of `model` (replacing the built-in ones, if any).
    #[must_use]
    pub fn with(mut self, model: impl Into<String>, prices: ModelPrices) -> Self {
        Arc::make_mut(&mut self.models).insert(model.into(), prices);
        self
    }

    /// The prices of `model`, or of the model a dated snapshot name (`<model>-YYYY-MM-DD`)
    /// belongs to.
    pub fn get(&self, model: &str) -> Option<&ModelPrices> {
        self.models
            .get(model)
            .or_else(|| self.models.get(undated(model)?))
    }

    /// What `usage` cost on `model`, or `None` when the table has no price for it.
    ///
    /// ```
    /// use realtime_agents::cost::PriceTable;
    /// use realtime_agents::model::Usage;
    /// let mut usage = Usage::default();
    /// usage.input_tokens = 2_000_000; // text
    /// assert_eq!(PriceTable::new().cost_usd("gpt-realtime-mini", &usage), Some(1.2));
    /// assert_eq!(PriceTable::new().cost_usd("unknown", &usage), None);
    /// ```
    pub fn cost_usd(&self, model: &str, usage: &Usage) -> Option<f64> {
        self.get(model).map(|prices| prices.cost_usd(usage))
    }
}

/// `name` without a trailing `-YYYY-MM-DD`, if it has one.
fn undated(name: &str) -> Option<&str> {
    let (base, date) = name.split_at_checked(name.len().checked_sub(11)?)?;
    let date = date.as_bytes();
    let digits = |range: std::ops::Range<usize>| date[range].iter().all(u8::is_ascii_digit);
    let dated = date[0] == b'-'
        && digits(1..5)
        && date[5] == b'-'
        && digits(6..8)
        && date[8] == b'-'
        && digits(9..11);
    dated.then_some(base)
}

impl Usage {
    /// What these tokens cost on `model` at `prices`, or `None` when the table has no price
    /// for the model.
    ///
    /// ```
    /// use realtime_agents::cost::PriceTable;
    /// use realtime_agents::model::Usage;
    /// let mut usage = Usage::default();
    /// usage.output_tokens = 1_000_000;
    /// usage.output_audio_tokens = 1_000_000;
    /// assert_eq!(usage.cost_usd(&PriceTable::new(), "gpt-realtime"), Some(64.0));
    /// ```
    pub fn cost_usd(&self, prices: &PriceTable, model: &str) -> Option<f64> {
        prices.cost_usd(model, self)
    }
}

/// The most one session may spend: in tokens (input plus output, over all its responses) or
/// in US dollars at the runner's [`PriceTable`] (like `max_budget_usd` elsewhere).
///
/// When a response's usage takes the session past its budget, the session ends and its final
/// [`Closed`](crate::RealtimeSessionEvent::Closed) carries [`Error::BudgetExceeded`]. The
/// check runs after each response, so the response that crosses the line is finished and
/// paid for: set the budget a response below the hard limit.
///
/// ```
/// use realtime_agents::{RealtimeRunConfig, cost::Budget};
/// let config = RealtimeRunConfig::new().budget(Budget::usd(0.50));
/// # let _ = config;
/// assert_eq!(Budget::tokens(20_000).to_string(), "20000 tokens");
/// assert_eq!(Budget::usd(0.5).to_string(), "$0.5000");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Budget {
    /// At most this many tokens (input plus output).
    Tokens(u64),
    /// At most this many US dollars.
    Usd(f64),
}

impl Budget {
    /// A budget of `tokens` tokens (input plus output).
    pub fn tokens(tokens: u64) -> Self {
        Self::Tokens(tokens)
    }

    /// A budget of `dollars` US dollars at the runner's prices (negative amounts count as 0).
    pub fn usd(dollars: f64) -> Self {
        Self::Usd(dollars.max(0.0))
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tokens(tokens) => write!(f, "{tokens} tokens"),
            Self::Usd(dollars) => write!(f, "${dollars:.4}"),
        }
    }
}

/// Whether `usage` (a session's running total) is over `budget`, for `model` at `prices`.
///
/// Returns [`Error::BudgetExceeded`] when it is over (strictly: spending exactly the budget
/// is allowed), [`Error::Config`] for a dollar budget on a model `prices` does not know (a
/// session the budget cannot be checked for must not run unchecked; the runner refuses to
/// start such a session, so this only happens when the check is called by hand), and `None`
/// otherwise.
///
/// ```
/// use realtime_agents::Error;
/// use realtime_agents::cost::{Budget, PriceTable, exceeded};
/// use realtime_agents::model::Usage;
///
/// let mut usage = Usage::default();
/// usage.input_tokens = 900;
/// usage.output_tokens = 200;
/// usage.total_tokens = 1_100;
/// let prices = PriceTable::new();
/// let over = exceeded(&Budget::tokens(1_000), &usage, &prices, "gpt-realtime");
/// assert!(matches!(over, Some(Error::BudgetExceeded { tokens: 1_100, .. })));
/// assert!(exceeded(&Budget::tokens(1_100), &usage, &prices, "gpt-realtime").is_none());
/// assert!(matches!(
///     exceeded(&Budget::usd(1.0), &usage, &prices, "unknown-model"),
///     Some(Error::Config(_))
/// ));
/// ```
pub fn exceeded(budget: &Budget, usage: &Usage, prices: &PriceTable, model: &str) -> Option<Error> {
    let tokens = usage
        .total_tokens
        .max(usage.input_tokens.saturating_add(usage.output_tokens));
    let cost_usd = prices.cost_usd(model, usage);
    let over = match *budget {
        Budget::Tokens(limit) => tokens > limit,
        Budget::Usd(limit) => match cost_usd {
            Some(cost) => cost > limit,
            None => return Some(unpriced(model)),
        },
    };
    over.then_some(Error::BudgetExceeded {
        budget: *budget,
        tokens,
        cost_usd,
    })
}

/// The error for a dollar budget on a model without a price.
pub(crate) fn unpriced(model: &str) -> Error {
    Error::Config(format!(
        "a dollar budget needs a price for model `{model}`: add one with RealtimeRunConfig::prices"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(text_in: u64, audio_in: u64, cached: u64, text_out: u64, audio_out: u64) -> Usage {
        let mut u = Usage::default();
        u.input_tokens = text_in + audio_in;
        u.input_audio_tokens = audio_in;
        u.cached_tokens = cached;
        u.output_tokens = text_out + audio_out;
        u.output_audio_tokens = audio_out;
        u.total_tokens = u.input_tokens + u.output_tokens;
        u
    }

    #[test]
    fn every_kind_of_token_has_its_price() {
        let p = ModelPrices::new(1.0, 2.0, 3.0, 4.0, 5.0);
        let m = 1_000_000;
        assert_eq!(p.cost_usd(&usage(m, 0, 0, 0, 0)), 1.0);
        assert_eq!(p.cost_usd(&usage(0, m, 0, 0, 0)), 3.0);
        assert_eq!(p.cost_usd(&usage(0, 0, 0, m, 0)), 4.0);
        assert_eq!(p.cost_usd(&usage(0, 0, 0, 0, m)), 5.0);
        assert_eq!(p.cost_usd(&usage(m, m, 0, m, m)), 13.0);
    }

    #[test]
    fn cached_tokens_come_off_text_then_audio() {
        let p = ModelPrices::new(1.0, 0.5, 10.0, 0.0, 0.0);
        let m = 1_000_000;
        // Half the text cached.
        assert_eq!(p.cost_usd(&usage(m, 0, m / 2, 0, 0)), 0.5 + 0.25);
        // All text and half the audio cached.
        assert_eq!(p.cost_usd(&usage(m, m, m + m / 2, 0, 0)), 0.75 + 5.0);
        // More cached than input (a server bug): never below zero, never more than all cached.
        assert_eq!(p.cost_usd(&usage(m, 0, 3 * m, 0, 0)), 0.5);
    }

    #[test]
    fn inconsistent_counts_do_not_underflow() {
        let u = Usage {
            input_audio_tokens: 10,
            output_audio_tokens: 10,
            ..Usage::default()
        };
        let cost = ModelPrices::new(1.0, 1.0, 1.0, 1.0, 1.0).cost_usd(&u);
        assert_eq!(cost, 0.0);
    }

    #[test]
    fn dated_names_and_lookalikes() {
        assert_eq!(undated("gpt-realtime-2025-08-28"), Some("gpt-realtime"));
        assert_eq!(
            undated("gpt-realtime-mini-2025-10-06"),
            Some("gpt-realtime-mini")
        );
        assert_eq!(undated("gpt-realtime-mini"), None);
        assert_eq!(undated("x-2025-08-2a"), None);
        assert_eq!(undated("short"), None);
        assert_eq!(undated("é-2025-08-28"), Some("é"));
        assert_eq!(undated("ééééé-é"), None);
        let table = PriceTable::new();
        assert_eq!(
            table.get("gpt-realtime-mini-2025-10-06"),
            table.get("gpt-realtime-mini")
        );
        assert_ne!(table.get("gpt-realtime-mini"), table.get("gpt-realtime"));
    }

    #[test]
    fn budgets() {
        let prices = PriceTable::new();
        let u = usage(0, 0, 0, 0, 1_000_000); // $64 on gpt-realtime
        assert!(exceeded(&Budget::usd(64.0), &u, &prices, "gpt-realtime").is_none());
        match exceeded(&Budget::usd(63.99), &u, &prices, "gpt-realtime") {
            Some(Error::BudgetExceeded {
                budget,
                tokens,
                cost_usd,
            }) => {
                assert_eq!(budget, Budget::usd(63.99));
                assert_eq!(tokens, 1_000_000);
                assert_eq!(cost_usd, Some(64.0));
            }
            other => panic!("{other:?}"),
        }
        // A token budget works for any model, priced or not.
        assert!(exceeded(&Budget::tokens(10), &u, &prices, "unknown").is_some());
        assert!(Budget::usd(-1.0) == Budget::usd(0.0));
        let json = serde_json::to_string(&Budget::usd(0.5)).unwrap();
        assert_eq!(json, r#"{"usd":0.5}"#);
    }
}
