//! Event definitions: what start, end, intermediate and boundary events catch or throw, with
//! message, signal, error and escalation references resolved through the top-level definitions.

use super::builder::Context;
use super::namespaces::Ns;
use super::xml_tree::ElementId;
use crate::model::{EventTrigger, MessageRef, Timer, TimerKind};
use std::collections::HashMap;

impl Context<'_, '_> {
    /// The trigger of an event element: `None` for a none event, [`EventTrigger::Multiple`] when
    /// it has several definitions.
    pub(super) fn event_trigger(&mut self, event: ElementId) -> Option<EventTrigger> {
        let tree = self.tree;
        let mut triggers: Vec<EventTrigger> = tree
            .children(event)
            .filter(|&c| {
                tree.element(c).ns.is_bpmn() && tree.element(c).name.ends_with("EventDefinition")
            })
            .filter_map(|definition| self.event_definition(event, definition))
            .collect();
        if tree.child(event, Ns::Bpmn, "eventDefinitionRef").is_some() {
            self.error(
                event,
                "`eventDefinitionRef` is not supported; put the event definition inside the event",
            );
        }
        match triggers.len() {
            0 => None,
            1 => triggers.pop(),
            _ => Some(EventTrigger::Multiple(triggers)),
        }
    }

    fn event_definition(
        &mut self,
        event: ElementId,
        definition: ElementId,
    ) -> Option<EventTrigger> {
        let tree = self.tree;
        let trigger = match self.name(definition) {
            "terminateEventDefinition" => EventTrigger::Terminate,
            "cancelEventDefinition" => EventTrigger::Cancel,
            "compensateEventDefinition" => EventTrigger::Compensation,
            "timerEventDefinition" => EventTrigger::Timer(self.timer(definition)?),
            "messageEventDefinition" => {
                let message = match tree.attr(definition, "messageRef") {
                    Some(reference) => self.message_ref(definition, reference),
                    None => MessageRef {
                        name: None,
                        correlation_key: None,
                    },
                };
                EventTrigger::Message(self.with_local_correlation_key(event, definition, message))
            }
            "signalEventDefinition" => {
                // A signal without a name is matched by its id.
                let name = self
                    .resolve(definition, "signalRef", "signal", |c| &c.signals)
                    .or_else(|| self.attr_string(definition, "signalRef"));
                EventTrigger::Signal { name }
            }
            "errorEventDefinition" => {
                let code = self.resolve(definition, "errorRef", "error", |c| &c.errors);
                EventTrigger::Error { code }
            }
            "escalationEventDefinition" => {
                let code = self.resolve(definition, "escalationRef", "escalation", |c| {
                    &c.escalations
                });
                EventTrigger::Escalation { code }
            }
            "conditionalEventDefinition" => EventTrigger::Conditional {
                condition: tree
                    .child(definition, Ns::Bpmn, "condition")
                    .and_then(|c| self.text_expr(c)),
            },
            "linkEventDefinition" => EventTrigger::Link {
                name: self.attr_string(definition, "name"),
            },
            other => {
                let message = format!("unknown event definition `{other}`");
                self.error(definition, message);
                return None;
            }
        };
        Some(trigger)
    }

    fn timer(&mut self, definition: ElementId) -> Option<Timer> {
        let tree = self.tree;
        let forms = [
            ("timeDuration", TimerKind::Duration),
            ("timeDate", TimerKind::Date),
            ("timeCycle", TimerKind::Cycle),
        ];
        let found = forms.iter().find_map(|&(name, kind)| {
            let element = tree.child(definition, Ns::Bpmn, name)?;
            self.text_expr(element).map(|expression| {
                (
                    element,
                    Timer {
                        kind,
                        expression,
                        time_zone: None,
                    },
                )
            })
        });
        let Some((element, mut timer)) = found else {
            self.error(
                definition,
                "timer has no `timeDuration`, `timeDate` or `timeCycle` value",
            );
            return None;
        };
        // `flowbot:timeZone` on the value element (or on the event definition).
        let zone = [element, definition]
            .into_iter()
            .find_map(|at| tree.ns_attr(at, Ns::Flowbot, "timeZone"));
        if let Some(zone) = zone.map(str::trim) {
            match crate::timer::check_time_zone(zone) {
                Ok(()) => timer.time_zone = Some(zone.to_string()),
                Err(err) => self.error(element, err.to_string()),
            }
        }
        Some(timer)
    }

    /// A message reference by id, resolved to the message's name and correlation key.
    pub(super) fn message_ref(&mut self, at: ElementId, reference: &str) -> MessageRef {
        match self.messages.get(reference) {
            Some((name, key)) => MessageRef {
                name: name.clone().or_else(|| Some(reference.to_owned())),
                correlation_key: key.clone(),
            },
            None => {
                self.warning(
                    at,
                    format!("message `{reference}` is not defined; its id is used as its name"),
                );
                MessageRef {
                    name: Some(reference.to_owned()),
                    correlation_key: None,
                }
            }
        }
    }

    /// Adds a correlation key given on the event or its definition (Zeebe subscription or
    /// `flowbot:correlationKey`) when the message definition has none.
    pub(super) fn with_local_correlation_key(
        &self,
        event: ElementId,
        definition: ElementId,
        mut message: MessageRef,
    ) -> MessageRef {
        if message.correlation_key.is_none() {
            let tree = self.tree;
            message.correlation_key = [definition, event].iter().find_map(|&at| {
                self.attr_expr(at, tree.ns_attr(at, Ns::Flowbot, "correlationKey"))
            });
        }
        message
    }

    /// Resolves the reference attribute `attribute` through a table of top-level definitions:
    /// the definition's name or code, or the reference itself (with a warning) when undefined.
    fn resolve(
        &mut self,
        at: ElementId,
        attribute: &str,
        what: &str,
        table: impl Fn(&Self) -> &HashMap<&str, Option<String>>,
    ) -> Option<String> {
        let reference = self.tree.attr(at, attribute)?;
        match table(self).get(reference) {
            Some(name) => name.clone(),
            None => {
                self.warning(
                    at,
                    format!("{what} `{reference}` is not defined; its id is used instead"),
                );
                Some(reference.to_owned())
            }
        }
    }
}
