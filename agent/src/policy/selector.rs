//! Kubernetes label selectors (matchLabels and matchExpressions), validated when read so a
//! malformed selector is an error naming its field rather than a selector that silently
//! matches nothing.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SelectorError {
    pub field: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Reads `selector`; `field` names it in errors (`spec.podSelector`...).
    pub fn parse(selector: &LabelSelector, field: &str) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::In(key.clone(), vec![value.clone()]));
        }
        for (index, expr) in selector.match_expressions.iter().flatten().enumerate() {
            let fail = |message: String| SelectorError {
                field: format!("{field}.matchExpressions[{index}]"),
                message,
            };
            if expr.key.is_empty() {
                return Err(fail("key is required".into()));
            }
            let values = expr.values.clone().unwrap_or_default();
            let requirement = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(fail(format!("operator {} needs values", expr.operator)));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(fail(format!("operator {} takes no values", expr.operator)));
                }
                "In" => Requirement::In(expr.key.clone(), values),
                "NotIn" => Requirement::NotIn(expr.key.clone(), values),
                "Exists" => Requirement::Exists(expr.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(expr.key.clone()),
                other => {
                    return Err(fail(format!(
                        "unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"
                    )));
                }
            };
            requirements.push(requirement);
        }
        Ok(Selector { requirements })
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|req| match req {
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(yaml: &str) -> Result<Selector, SelectorError> {
        Selector::parse(&serde_yaml::from_str(yaml).unwrap(), "spec.podSelector")
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        (pairs.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_operator_and_match_labels() {
        let web = labels(&[("tier", "web"), ("env", "prod")]);
        let none = labels(&[]);
        let sel = |yaml: &str| selector(yaml).unwrap();
        assert!(sel("{}").matches(&none), "empty selects everything");
        assert!(sel("matchLabels: {tier: web}").matches(&web));
        assert!(!sel("matchLabels: {tier: db}").matches(&web));
        let expr = |op: &str, values: &str| {
            sel(&format!(
                "matchExpressions: [{{key: tier, operator: {op}{values}}}]"
            ))
        };
        assert!(expr("In", ", values: [web, db]").matches(&web));
        assert!(!expr("In", ", values: [db]").matches(&web));
        assert!(!expr("In", ", values: [web]").matches(&none));
        assert!(!expr("NotIn", ", values: [web]").matches(&web));
        assert!(
            expr("NotIn", ", values: [web]").matches(&none),
            "absent key"
        );
        assert!(expr("Exists", "").matches(&web) && !expr("Exists", "").matches(&none));
        assert!(!expr("DoesNotExist", "").matches(&web));
        assert!(expr("DoesNotExist", "").matches(&none));
        let both = sel(
            "matchLabels: {env: prod}\nmatchExpressions: [{key: tier, operator: In, values: [db]}]",
        );
        assert!(!both.matches(&web), "all requirements must hold");
    }

    #[test]
    fn malformed_expressions_name_the_field() {
        let err = selector("matchExpressions: [{key: a, operator: Equals, values: [x]}]")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spec.podSelector.matchExpressions[0]") && err.contains("Equals"),
            "{err}"
        );
        let err = selector("matchExpressions: [{key: a, operator: In}]").unwrap_err();
        assert!(err.message.contains("needs values"), "{err}");
        let err =
            selector("matchExpressions: [{key: a, operator: Exists, values: [x]}]").unwrap_err();
        assert!(err.message.contains("no values"), "{err}");
    }
}
