//! The words of the YAML DSL: every key and keyword the reader accepts, in one place, so the
//! reader, its "did you mean" hints and the JSON Schema use the same lists.

/// Top-level keys of a process file.
pub const PROCESS_KEYS: &[&str] = &["process", "name", "lanes", "rules", "nodes"];

/// Keys of one lane.
pub const LANE_KEYS: &[&str] = &["name", "nodes"];

/// Keys that say what a node is; every node has exactly one of them.
pub const NODE_KIND_KEYS: &[&str] = &[
    "start",
    "end",
    "catch",
    "throw",
    "boundary",
    "task",
    "service",
    "script",
    "user",
    "manual",
    "receive",
    "send",
    "business_rule",
    "llm",
    "exclusive",
    "parallel",
    "inclusive",
    "event_based",
    "complex",
    "subprocess",
    "call",
];

/// Keys any node may have besides its kind key.
pub const NODE_COMMON_KEYS: &[&str] = &["name", "next", "rules"];

/// Keys only activities (tasks, subprocesses, call activities) may have.
pub const ACTIVITY_KEYS: &[&str] = &["retry", "for_each", "loop", "inputs", "outputs"];

/// Node kind keys that are activities.
pub const ACTIVITY_KINDS: &[&str] = &[
    "task",
    "service",
    "script",
    "user",
    "manual",
    "receive",
    "send",
    "business_rule",
    "llm",
    "subprocess",
    "call",
];

/// Every key that can describe an event trigger.
pub const TRIGGER_KEYS: &[&str] = &[
    "message",
    "timer",
    "signal",
    "error",
    "escalation",
    "condition",
    "link",
    "terminate",
    "cancel",
    "compensation",
];

/// Triggers a start event may have.
pub const START_TRIGGERS: &[&str] = &[
    "message",
    "timer",
    "signal",
    "condition",
    "error",
    "escalation",
    "compensation",
];
/// Results an end event may throw.
pub const END_TRIGGERS: &[&str] = &[
    "terminate",
    "error",
    "escalation",
    "message",
    "signal",
    "cancel",
    "compensation",
];
/// Triggers an intermediate catch event may wait for.
pub const CATCH_TRIGGERS: &[&str] = &["message", "timer", "signal", "condition", "link"];
/// Results an intermediate throw event may throw.
pub const THROW_TRIGGERS: &[&str] = &["message", "signal", "escalation", "link", "compensation"];
/// Triggers a boundary event may catch.
pub const BOUNDARY_TRIGGERS: &[&str] = &[
    "message",
    "timer",
    "signal",
    "condition",
    "error",
    "escalation",
    "cancel",
    "compensation",
];

/// Keys of a start event besides its triggers (`parallel`: wait for all of several triggers).
pub const START_EXTRA_KEYS: &[&str] = &["interrupting", "parallel"];
/// Keys of a catch event besides its triggers.
pub const CATCH_EXTRA_KEYS: &[&str] = &["parallel"];
/// Keys of a boundary event besides its triggers.
pub const BOUNDARY_EXTRA_KEYS: &[&str] = &["attached_to", "interrupting", "parallel"];

/// Keys of a message reference written as a mapping.
pub const MESSAGE_KEYS: &[&str] = &["name", "correlation_key"];
/// Keys of a timer; exactly one is given.
pub const TIMER_KEYS: &[&str] = &["duration", "date", "cycle"];
/// Keys of a timer besides its form: the business time zone of a cron cycle or a date.
pub const TIMER_EXTRA_KEYS: &[&str] = &["time_zone"];

/// Keys of a service task written as a mapping.
pub const SERVICE_KEYS: &[&str] = &["handler"];

/// Keys of a user or manual task's settings.
pub const PERSON_TASK_KEYS: &[&str] = &["form"];
/// Keys of a script written as a mapping.
pub const SCRIPT_KEYS: &[&str] = &["source", "language"];
/// Keys of a send task written as a mapping.
pub const SEND_KEYS: &[&str] = &["message", "handler"];
/// Keys of a business-rule task written as a mapping.
pub const BUSINESS_RULE_KEYS: &[&str] = &["script", "decision", "result"];
/// Keys of an LLM step.
pub const LLM_KEYS: &[&str] = &[
    "mode", "prompt", "system", "output", "schema", "labels", "options",
];
/// LLM modes.
pub const LLM_MODES: &[&str] = &["generate", "extract", "classify"];
/// Keys of an embedded subprocess.
pub const SUBPROCESS_KEYS: &[&str] = &["nodes", "event", "transaction"];
/// Keys of a call activity written as a mapping.
pub const CALL_KEYS: &[&str] = &["process", "binding", "version"];

/// Keys of a branch (an outgoing flow written as a mapping).
pub const BRANCH_KEYS: &[&str] = &["to", "when", "otherwise", "id", "name"];

/// Keys a complex gateway may have besides the common ones: its activation condition.
pub const COMPLEX_EXTRA_KEYS: &[&str] = &["activation"];

/// Keys of a standard loop written as a mapping.
pub const LOOP_KEYS: &[&str] = &["while", "test_before", "max"];

/// Keys of a retry policy.
pub const RETRY_KEYS: &[&str] = &["retries", "delay", "max_delay"];
/// Keys of a multi-instance (`for_each`) description.
pub const FOR_EACH_KEYS: &[&str] = &[
    "over",
    "as",
    "sequential",
    "count",
    "until",
    "collect",
    "into",
];

/// Keys of a rule attachment.
pub const RULE_KEYS: &[&str] = &["on", "file", "script", "variable"];
/// Moments a rule can attach to (`on:`).
pub const RULE_POINTS: &[&str] = &[
    "guard_complete",
    "guard_message",
    "guard_variable",
    "enter",
    "leave",
    "start",
    "variable_change",
    "status_change",
];
/// Rule moments that name a variable.
pub const RULE_POINTS_WITH_VARIABLE: &[&str] = &["guard_variable", "variable_change"];

/// The word a gateway kind key accepts instead of a list of branches, for a gateway that only
/// merges or joins (`exclusive: merge`, `parallel: join`).
pub const GATEWAY_MERGE_WORDS: &[&str] = &["merge", "join"];

/// Default delay before the first retry, in milliseconds.
pub const DEFAULT_RETRY_DELAY_MS: u64 = 1_000;
/// Default upper bound of the retry delay, in milliseconds.
pub const DEFAULT_RETRY_MAX_DELAY_MS: u64 = 60_000;

/// The regular expression every node and flow id matches (an XML name, so ids carry over to BPMN).
pub const ID_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_.-]*$";
/// Pattern of a rule's `variable:`: a variable name, or a name prefix ending in `*`.
pub const RULE_VARIABLE_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_.-]*\\*?$";

/// Whether `id` matches [`ID_PATTERN`].
pub fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// How many unknown ids of one file get a "did you mean": each suggestion compares the word with
/// every id of its scope, so a file of thousands of unknown ids would otherwise cost millions of
/// comparisons.
pub const MAX_ID_HINTS: usize = 100;

/// The longest word a suggestion is looked for (the comparison costs its length times the
/// candidate's).
const MAX_HINT_WORD_CHARS: usize = 64;

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let length = word.chars().count();
    if length > MAX_HINT_WORD_CHARS {
        return None;
    }
    candidates
        .into_iter()
        // The distance is at least the difference in length: skip what cannot be close.
        .filter(|candidate| {
            let other = candidate.chars().count();
            other <= MAX_HINT_WORD_CHARS && other.abs_diff(length) <= (other.max(length) / 3).max(1)
        })
        .map(|candidate| (strsim::damerau_levenshtein(word, candidate), candidate))
        .filter(|(distance, candidate)| {
            let allowed = (candidate.chars().count().max(word.chars().count()) / 3).max(1);
            *distance <= allowed
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// `; did you mean `x`?` when a candidate is close to `word`, else the list of candidates.
pub fn suggestion<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str> + Clone,
{
    match closest(word, candidates.clone()) {
        Some(candidate) => format!("; did you mean `{candidate}`?"),
        None => {
            let list: Vec<String> = candidates.into_iter().map(|c| format!("`{c}`")).collect();
            if list.is_empty() || list.len() > 12 {
                String::new()
            } else {
                format!(" (expected one of {})", list.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(closest("nxt", ["next", "name", "rules"]), Some("next"));
        assert_eq!(
            closest("exclusiv", NODE_KIND_KEYS.iter().copied()),
            Some("exclusive")
        );
        assert_eq!(closest("banana", ["next", "name"]), None);
        assert_eq!(
            suggestion("banana", ["next", "name"]),
            " (expected one of `next`, `name`)"
        );
    }

    #[test]
    fn ids_are_xml_names() {
        assert!(is_valid_id("order_received"));
        assert!(is_valid_id("_a.b-1"));
        assert!(!is_valid_id("1abc"));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id(""));
    }
}
