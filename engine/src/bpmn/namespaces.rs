//! The XML namespaces the BPMN front end understands, recognised by URI (the prefix is free).

use quick_xml::name::ResolveResult;

/// A namespace the parser distinguishes. Everything it does not know (diagram interchange,
/// modeler-specific extensions) is [`Ns::Other`] and skipped with its subtree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ns {
    /// The BPMN 2.0 model namespace (also the older `schema.omg.org` URI).
    Bpmn,
    /// No namespace: unprefixed attributes, or elements in a file without a default namespace.
    NoNamespace,
    /// Flowbot's own extensions, `https://flowbot.dev/schema/1.0`.
    Flowbot,
    /// Camunda 7 (and the Activiti/Flowable dialects that share its attribute names).
    Camunda,
    /// Camunda 8 / Zeebe.
    Zeebe,
    /// SpiffWorkflow.
    Spiff,
    /// XML Schema instance (`xsi:type`).
    Xsi,
    /// Any other namespace.
    Other,
}

impl Ns {
    /// Whether an element in this namespace is read as a BPMN element.
    pub(crate) fn is_bpmn(self) -> bool {
        matches!(self, Ns::Bpmn | Ns::NoNamespace)
    }

    /// Whether elements in this namespace are kept in the tree (the rest is skipped).
    pub(crate) fn keeps_elements(self) -> bool {
        matches!(
            self,
            Ns::Bpmn | Ns::NoNamespace | Ns::Flowbot | Ns::Camunda | Ns::Zeebe | Ns::Spiff
        )
    }
}

/// The Flowbot extension namespace URI.
pub const FLOWBOT_NAMESPACE: &str = "https://flowbot.dev/schema/1.0";

/// Classifies a namespace URI.
pub(crate) fn classify_uri(uri: &[u8]) -> Ns {
    match uri {
        b"http://www.omg.org/spec/BPMN/20100524/MODEL" | b"http://schema.omg.org/spec/BPMN/2.0" => {
            Ns::Bpmn
        }
        uri if uri == FLOWBOT_NAMESPACE.as_bytes() => Ns::Flowbot,
        b"http://camunda.org/schema/1.0/bpmn"
        | b"http://activiti.org/bpmn"
        | b"http://flowable.org/bpmn" => Ns::Camunda,
        b"http://camunda.org/schema/zeebe/1.0" => Ns::Zeebe,
        b"http://spiffworkflow.org/bpmn/schema/1.0/core" => Ns::Spiff,
        b"http://www.w3.org/2001/XMLSchema-instance" => Ns::Xsi,
        _ => Ns::Other,
    }
}

/// Classifies an undeclared prefix by its usual spelling, so a file that forgot a namespace
/// declaration still reads (the caller warns about it).
pub(crate) fn classify_undeclared_prefix(prefix: &[u8]) -> Ns {
    match prefix {
        b"bpmn" | b"bpmn2" | b"semantic" | b"model" => Ns::Bpmn,
        b"flowbot" => Ns::Flowbot,
        b"camunda" | b"activiti" | b"flowable" => Ns::Camunda,
        b"zeebe" => Ns::Zeebe,
        b"spiffworkflow" => Ns::Spiff,
        b"xsi" => Ns::Xsi,
        _ => Ns::Other,
    }
}

/// Classifies the result of quick-xml's namespace resolution; the second value is the prefix
/// when it was not declared.
pub(crate) fn classify(result: ResolveResult<'_>) -> (Ns, Option<Vec<u8>>) {
    match result {
        ResolveResult::Bound(ns) => (classify_uri(ns.into_inner()), None),
        ResolveResult::Unbound => (Ns::NoNamespace, None),
        ResolveResult::Unknown(prefix) => (classify_undeclared_prefix(&prefix), Some(prefix)),
    }
}
