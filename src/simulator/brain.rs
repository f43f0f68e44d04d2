//! What the simulated assistant says: a small deterministic rule set (see the module docs of
//! [`crate::simulator`] for the user-facing description).

use serde_json::{Map, Value};

/// One conversation item as the brain sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Turn {
    /// A user message: its text, or the transcript of its audio.
    User(String),
    /// The empty user turn committed by an idle timeout.
    UserIdle,
    /// The output of a function call.
    ToolOutput(String),
    /// Anything else (assistant messages, function calls, system messages).
    Other,
}

/// What a response will contain.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// One assistant message.
    Speak(String),
    /// One or more function calls (name, JSON arguments).
    Calls(Vec<(String, String)>),
}

/// A long deterministic story (about 40 seconds of simulated speech).
pub(crate) const STORY: &str = "Once upon a time, in a small harbour town, there lived a \
lighthouse keeper named Ada who collected the voices of ships. Every evening she wrote down \
the horns she heard: the deep hum of the ferries, the bright whistle of the fishing boats, and \
the slow moan of the cargo ships that passed far out at sea. One foggy night a horn sounded \
that was not in her notebook. It was soft and curious, almost like a question. Ada lit the \
great lamp, turned the lens, and answered with three long flashes. Out of the fog drifted a \
tiny paper boat, carrying a note that said: thank you for listening. And from that night on, \
every ship that passed the lighthouse sounded one extra note, just for her.";

/// The greeting for "hello".
pub(crate) const GREETING: &str = "Hello! I'm a simulated assistant. How can I help you today?";

/// Words of tool names that never count as a match.
const GENERIC_WORDS: &[&str] = &[
    "get",
    "set",
    "fetch",
    "lookup",
    "look",
    "find",
    "search",
    "query",
    "retrieve",
    "check",
    "list",
    "show",
    "create",
    "update",
    "make",
    "do",
    "run",
    "call",
    "send",
    "the",
    "a",
    "an",
    "to",
    "for",
    "of",
    "in",
    "on",
    "and",
    "or",
    "by",
    "with",
    "from",
    "my",
    "transfer",
    "agent",
    "tool",
    "current",
    "info",
    "information",
    "data",
];

const PREPOSITIONS: &[&str] = &["in", "for", "of", "at", "about", "to"];

/// Decides the response: tool calls when the last item is a user message matching a tool,
/// otherwise a spoken (or written) answer.
pub(crate) fn plan(
    turns: &[Turn],
    instructions: &str,
    tools: &[Value],
    tool_choice: &Value,
    parallel_tool_calls: bool,
) -> Plan {
    let always = always_answer(instructions);
    let functions: Vec<&Value> = tools
        .iter()
        .filter(|t| t.get("type").and_then(Value::as_str).unwrap_or("function") == "function")
        .filter(|t| t.get("name").and_then(Value::as_str).is_some())
        .collect();
    match turns.last() {
        Some(Turn::User(text)) => {
            let mut calls: Vec<&Value> = match tool_choice {
                Value::String(s) if s == "none" => Vec::new(),
                Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
                    let wanted = o.get("name").and_then(Value::as_str).unwrap_or_default();
                    functions
                        .iter()
                        .copied()
                        .filter(|t| t["name"] == wanted)
                        .take(1)
                        .collect()
                }
                _ => functions
                    .iter()
                    .copied()
                    .filter(|t| tool_matches(t["name"].as_str().unwrap_or_default(), text))
                    .collect(),
            };
            if calls.is_empty() && tool_choice.as_str() == Some("required") {
                calls.extend(functions.first().copied());
            }
            if !parallel_tool_calls {
                calls.truncate(1);
            }
            if !calls.is_empty() {
                return Plan::Calls(
                    calls
                        .into_iter()
                        .map(|t| {
                            let name = t["name"].as_str().unwrap_or_default().to_string();
                            (name, arguments_for(t.get("parameters"), text))
                        })
                        .collect(),
                );
            }
            Plan::Speak(always.unwrap_or_else(|| reply_to(text)))
        }
        _ if always.is_some() => Plan::Speak(always.unwrap_or_default()),
        Some(Turn::ToolOutput(_)) => {
            let outputs: Vec<String> = turns
                .iter()
                .rev()
                .take_while(|t| matches!(t, Turn::ToolOutput(_)))
                .filter_map(|t| match t {
                    Turn::ToolOutput(o) => Some(speakable(o)),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let joined = outputs.join("; ");
            let joined = joined.trim_end_matches(['.', ' ']);
            Plan::Speak(format!("Here is what I found: {joined}."))
        }
        Some(Turn::UserIdle) => Plan::Speak("Are you still there?".to_string()),
        Some(Turn::Other) => Plan::Speak("Is there anything else I can help you with?".to_string()),
        None => Plan::Speak(GREETING.to_string()),
    }
}

/// `Always answer: X` in the instructions (X runs to the end of its line).
fn always_answer(instructions: &str) -> Option<String> {
    let at = instructions.find("Always answer:")?;
    let rest = &instructions[at + "Always answer:".len()..];
    let line = rest.lines().next().unwrap_or_default().trim();
    (!line.is_empty()).then(|| line.to_string())
}

fn words_lower(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The reply to a plain user message.
fn reply_to(text: &str) -> String {
    let words = words_lower(text);
    if words
        .iter()
        .any(|w| matches!(w.as_str(), "hello" | "hi" | "hey"))
    {
        GREETING.to_string()
    } else if words.iter().any(|w| w == "story" || w == "stories") {
        STORY.to_string()
    } else {
        let text = text.trim();
        if text.is_empty() {
            "I see. How can I help you?".to_string()
        } else if text.ends_with(['.', '!', '?']) {
            format!("You said: {text}")
        } else {
            format!("You said: {text}.")
        }
    }
}

/// The words of a tool name that can match (name split on `_`, `-`, `.` and camelCase,
/// lowercased, generic words removed).
fn tool_words(name: &str) -> Vec<String> {
    let mut spaced = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_uppercase() && prev_lower {
            spaced.push(' ');
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        spaced.push(c);
    }
    words_lower(&spaced)
        .into_iter()
        .filter(|w| !GENERIC_WORDS.contains(&w.as_str()))
        .collect()
}

/// Whether a user message triggers the tool `name`: some word of the name (see
/// [`tool_words`]) equals a word of the message, or its singular/plural.
pub(crate) fn tool_matches(name: &str, text: &str) -> bool {
    let user = words_lower(text);
    tool_words(name).iter().any(|w| {
        user.iter().any(|u| {
            u == w
                || u.strip_suffix('s') == Some(w.as_str())
                || w.strip_suffix('s') == Some(u.as_str())
        })
    })
}

/// Tokens of the text with their surrounding punctuation removed, each with the punctuation
/// character that followed it, if any.
fn tokens(text: &str) -> Vec<(String, Option<char>)> {
    text.split_whitespace()
        .filter_map(|raw| {
            let trimmed = raw.trim_matches(|c: char| !c.is_alphanumeric());
            if trimmed.is_empty() {
                return None;
            }
            let trailing = raw.chars().last().filter(|c| !c.is_alphanumeric());
            Some((trimmed.to_string(), trailing))
        })
        .collect()
}

fn capitalised(word: &str) -> bool {
    word.chars().next().is_some_and(char::is_uppercase)
        && !matches!(word, "I" | "I'm" | "I'd" | "I'll" | "I've")
}

/// The capitalised word(s) right after the first "in|for|of|at|about|to" followed by one,
/// else the last capitalised word that does not start a sentence.
fn string_argument(text: &str) -> Option<String> {
    let toks = tokens(text);
    for (i, (word, trailing)) in toks.iter().enumerate() {
        if trailing.is_some() || !PREPOSITIONS.contains(&word.to_lowercase().as_str()) {
            continue;
        }
        let mut phrase = Vec::new();
        for (next, next_trailing) in &toks[i + 1..] {
            if !capitalised(next) {
                break;
            }
            phrase.push(next.as_str());
            if next_trailing.is_some() {
                break;
            }
        }
        if !phrase.is_empty() {
            return Some(phrase.join(" "));
        }
    }
    let mut sentence_start = true;
    let mut last = None;
    for (word, trailing) in &toks {
        if !sentence_start && capitalised(word) {
            last = Some(word.clone());
        }
        sentence_start = matches!(trailing, Some('.' | '!' | '?'));
    }
    last
}

/// The first number in the text.
fn number_argument(text: &str) -> Option<f64> {
    let chars: Vec<char> = text.chars().collect();
    let start = chars.iter().position(char::is_ascii_digit)?;
    let mut end = start;
    while end < chars.len()
        && (chars[end].is_ascii_digit()
            || (chars[end] == '.' && chars.get(end + 1).is_some_and(char::is_ascii_digit)))
    {
        end += 1;
    }
    let negative = start > 0 && chars[start - 1] == '-';
    let s: String = chars[start..end].iter().collect();
    s.parse::<f64>().ok().map(|v| if negative { -v } else { v })
}

fn schema_type(schema: &Value) -> &str {
    match schema.get("type") {
        Some(Value::String(s)) => s,
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("enum").is_some() => "string",
        _ => "",
    }
}

/// JSON arguments for a tool call, from its JSON-schema `parameters` and the user text.
pub(crate) fn arguments_for(parameters: Option<&Value>, text: &str) -> String {
    let empty = Map::new();
    let properties = parameters
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let required: Vec<&str> = parameters
        .and_then(|p| p.get("required"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let string_value = string_argument(text);
    let number = number_argument(text);
    let mut args = Map::new();
    for (name, schema) in properties {
        let is_required = required.contains(&name.as_str());
        let value = match schema_type(schema) {
            "string" => {
                let options: Vec<&str> = schema
                    .get("enum")
                    .and_then(Value::as_array)
                    .map(|e| e.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if options.is_empty() {
                    match (&string_value, is_required) {
                        (Some(v), _) => Some(Value::from(v.clone())),
                        (None, true) => Some(Value::from("")),
                        (None, false) => None,
                    }
                } else {
                    let lower = text.to_lowercase();
                    let found = options.iter().find(|o| lower.contains(&o.to_lowercase()));
                    match (found, is_required) {
                        (Some(o), _) => Some(Value::from(*o)),
                        (None, true) => Some(Value::from(options[0])),
                        (None, false) => None,
                    }
                }
            }
            "integer" => match (number, is_required) {
                (Some(n), _) => Some(Value::from(n.trunc() as i64)),
                (None, true) => Some(Value::from(0)),
                (None, false) => None,
            },
            "number" => match (number, is_required) {
                (Some(n), _) => Some(Value::from(n)),
                (None, true) => Some(Value::from(0)),
                (None, false) => None,
            },
            "boolean" => is_required.then_some(Value::Bool(false)),
            "array" => is_required.then(|| Value::Array(Vec::new())),
            "object" => is_required.then(|| Value::Object(Map::new())),
            "null" => is_required.then_some(Value::Null),
            _ => is_required.then(|| Value::from(string_value.clone().unwrap_or_default())),
        };
        if let Some(value) = value {
            args.insert(name.clone(), value);
        }
    }
    Value::Object(args).to_string()
}

/// A tool output as speech: JSON flattened to `key: value` text, strings as they are.
fn speakable(output: &str) -> String {
    fn flatten(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Null => "nothing".to_string(),
            Value::Array(items) => items.iter().map(flatten).collect::<Vec<_>>().join(", "),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| format!("{}: {}", k.replace('_', " "), flatten(v)))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        }
    }
    match serde_json::from_str::<Value>(output) {
        Ok(v) => flatten(&v),
        Err(_) => output
            .chars()
            .filter(|c| !matches!(c, '{' | '}' | '[' | ']' | '"'))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn weather() -> Value {
        json!({"type":"function","name":"get_weather","parameters":{"type":"object",
            "properties":{"city":{"type":"string"}},"required":["city"]}})
    }

    #[test]
    fn matches_tools_by_name_words() {
        assert!(tool_matches("get_weather", "What's the weather in Paris?"));
        assert!(tool_matches(
            "transfer_to_billing_agent",
            "transfer me to billing"
        ));
        assert!(tool_matches("search_flights", "I need a flight to Rome"));
        assert!(tool_matches("getOrderStatus", "where are my orders"));
        assert!(!tool_matches("get_weather", "hello there"));
        assert!(!tool_matches(
            "transfer_to_billing_agent",
            "put me through to an agent"
        ));
    }

    #[test]
    fn extracts_arguments() {
        assert_eq!(
            string_argument("What's the weather in Paris?").as_deref(),
            Some("Paris")
        );
        assert_eq!(
            string_argument("Weather for New York, please").as_deref(),
            Some("New York")
        );
        assert_eq!(
            string_argument("Is it raining? Tell me, Berlin or not").as_deref(),
            Some("Berlin")
        );
        assert_eq!(string_argument("What is the weather like"), None);
        let params = json!({"type":"object","properties":{
            "city":{"type":"string"}, "days":{"type":"integer"}, "metric":{"type":"boolean"},
            "unit":{"type":"string","enum":["celsius","fahrenheit"]}},
            "required":["city","unit"]});
        let args: Value =
            serde_json::from_str(&arguments_for(Some(&params), "Forecast in Oslo for 3 days"))
                .unwrap();
        assert_eq!(args, json!({"city":"Oslo","days":3,"unit":"celsius"}));
        let args: Value = serde_json::from_str(&arguments_for(Some(&params), "hmm")).unwrap();
        assert_eq!(args, json!({"city":"","unit":"celsius"}));
        assert_eq!(arguments_for(None, "x"), "{}");
    }

    #[test]
    fn plans_calls_and_answers() {
        let tools = vec![
            weather(),
            json!({"type":"function","name":"transfer_to_billing_agent",
            "parameters":{"type":"object","properties":{},"required":[]}}),
        ];
        let auto = json!("auto");
        let user = |t: &str| vec![Turn::User(t.to_string())];
        assert_eq!(
            plan(
                &user("What's the weather in Paris?"),
                "",
                &tools,
                &auto,
                true
            ),
            Plan::Calls(vec![("get_weather".into(), r#"{"city":"Paris"}"#.into())])
        );
        assert_eq!(
            plan(&user("weather, then billing"), "", &tools, &auto, true),
            Plan::Calls(vec![
                ("get_weather".into(), r#"{"city":""}"#.into()),
                ("transfer_to_billing_agent".into(), "{}".into())
            ])
        );
        assert_eq!(
            plan(
                &user("What's the weather in Paris?"),
                "",
                &tools,
                &json!("none"),
                true
            ),
            Plan::Speak("You said: What's the weather in Paris?".into())
        );
        assert_eq!(
            plan(&user("Hi!"), "", &[], &auto, true),
            Plan::Speak(GREETING.into())
        );
        assert_eq!(
            plan(&user("tell me a story"), "", &[], &auto, true),
            Plan::Speak(STORY.into())
        );
        assert_eq!(
            plan(
                &user("ok"),
                "Be brief.\nAlways answer: Billing here.\n",
                &[],
                &auto,
                true
            ),
            Plan::Speak("Billing here.".into())
        );
        let after_tool = vec![
            Turn::User("weather?".into()),
            Turn::Other,
            Turn::ToolOutput(r#"{"forecast":"Sunny","temp_c":22}"#.into()),
        ];
        assert_eq!(
            plan(&after_tool, "", &tools, &auto, true),
            Plan::Speak("Here is what I found: forecast: Sunny, temp c: 22.".into())
        );
        assert_eq!(
            plan(&[], "", &[], &auto, true),
            Plan::Speak(GREETING.into())
        );
    }
}
