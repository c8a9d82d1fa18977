use super::*;
use serde_json::json;

fn vars(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn eval_with(text: &str, variables: serde_json::Value) -> Value {
    Expression::parse(text, &["Years of Service"])
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .eval(&vars(variables))
}

fn eval(text: &str) -> Value {
    eval_with(text, json!({}))
}

fn string(text: &str) -> String {
    eval(text).to_string()
}

fn test(tests: &str, input: serde_json::Value) -> Option<bool> {
    let variables = vars(json!({"low": 1, "high": 10, "colours": ["red", "blue"]}));
    UnaryTests::parse(tests, &[])
        .unwrap_or_else(|e| panic!("{tests}: {e}"))
        .matches(&Value::from_json(&input), &variables)
}

#[test]
fn arithmetic_follows_feel_precedence_and_decimals() {
    assert_eq!(string("10 + 20 / -5 - 3"), "3");
    assert_eq!(string("5+2**5+3"), "40");
    assert_eq!(string("(5+2)**5"), "16807");
    assert_eq!(string("10**-5"), "0.00001");
    assert_eq!(string("1.2*10**3"), "1200");
    assert_eq!(string("0.1 + 0.2"), "0.3");
    assert_eq!(string("-.872"), "-0.872");
    assert_eq!(string("12300 = 1.23e4"), "true");
    assert_eq!(eval("(10+20)/0"), Value::Null);
    assert_eq!(eval("10 + null"), Value::Null);
    assert_eq!(eval("1 + \"a\""), Value::Null);
    assert_eq!(string("\"a\" + \"b\""), "ab");
    assert_eq!(string("1 /* one */ + 2 // two"), "3");
}

#[test]
fn logic_is_three_valued() {
    assert_eq!(eval("true and null"), Value::Null);
    assert_eq!(eval("false and null"), Value::Bool(false));
    assert_eq!(eval("true or null"), Value::Bool(true));
    assert_eq!(eval("false or null"), Value::Null);
    assert_eq!(eval("true and 1"), Value::Null);
    assert_eq!(eval("not(null)"), Value::Null);
    assert_eq!(eval("not(1)"), Value::Null);
    assert_eq!(eval("not(false)"), Value::Bool(true));
}

#[test]
fn names_paths_and_names_with_spaces() {
    let order = json!({"order": {"amount": 120, "lines": [{"sku": "a"}, {"sku": "b"}]},
                       "Years of Service": 31});
    assert_eq!(
        eval_with("order.amount * 2", order.clone()).to_string(),
        "240"
    );
    assert_eq!(
        eval_with("order.lines.sku", order.clone()).to_string(),
        "[\"a\", \"b\"]"
    );
    assert_eq!(
        eval_with("order.lines[2].sku", order.clone()).to_string(),
        "b"
    );
    assert_eq!(
        eval_with("order.lines[sku = \"a\"]", order.clone()).to_string(),
        "[{sku: \"a\"}]"
    );
    assert_eq!(
        eval_with("Years of Service >= 30", order.clone()),
        Value::Bool(true)
    );
    assert_eq!(eval_with("unknown + 1", order), Value::Null);
}

#[test]
fn comparisons_between_in_and_if() {
    assert_eq!(eval("5 between 1 and 10"), Value::Bool(true));
    assert_eq!(eval("5 in (1, < 5, >= 10)"), Value::Bool(false));
    assert_eq!(eval("5 in [1..5]"), Value::Bool(true));
    assert_eq!(eval("5 in [1..5)"), Value::Bool(false));
    assert_eq!(eval("1 in [2,3,1]"), Value::Bool(true));
    assert_eq!(eval("\"c\" in (\"b\"..\"d\")"), Value::Bool(true));
    assert_eq!(eval("\"a\" < 1"), Value::Null);
    assert_eq!(string("if 2 > 1 then \"yes\" else \"no\""), "yes");
    assert_eq!(eval("(< 10) = (null..10)"), Value::Bool(false));
    assert_eq!(eval("(< 10) = (< 10)"), Value::Bool(true));
    assert_eq!(eval("[1..10) = [1..10["), Value::Bool(true));
    assert_eq!(eval("5 in (null..10]"), Value::Null);
    assert_eq!(eval("1 in [[2..4], [1..3]]"), Value::Bool(true));
    assert_eq!(eval("[1,2] in [[1,2,3], [1,2]]"), Value::Bool(true));
    assert_eq!(eval("[1,2] = [1,2]"), Value::Bool(true));
    assert_eq!(eval("{a: 1, b: 2} = {b: 2, a: 1}"), Value::Bool(true));
}

#[test]
fn dates_times_and_durations() {
    assert_eq!(
        string("date(\"2024-01-31\") + duration(\"P1M\")"),
        "2024-02-29"
    );
    assert_eq!(
        string("date(\"2024-03-01\") - date(\"2024-02-01\")"),
        "P29D"
    );
    assert_eq!(
        string("date and time(\"2024-01-01T10:00:00Z\") + duration(\"PT90M\")"),
        "2024-01-01T11:30:00Z"
    );
    assert_eq!(
        eval("date and time(\"2024-01-01T10:00:00+02:00\") = date and time(\"2024-01-01T08:00:00Z\")"),
        Value::Bool(true)
    );
    assert_eq!(
        eval("time(\"10:30:00\") < time(\"11:00:00\")"),
        Value::Bool(true)
    );
    assert_eq!(
        eval("duration(\"P1Y\") > duration(\"P11M\")"),
        Value::Bool(true)
    );
    assert_eq!(eval("duration(\"P1Y\") > duration(\"P1D\")"), Value::Null);
    assert_eq!(string("@\"P2D\" * 2"), "P4D");
    assert_eq!(string("date(\"2024-05-17\").month"), "5");
    assert_eq!(
        string("years and months duration(date(\"2020-05-17\"), date(\"2024-05-16\"))"),
        "P3Y11M"
    );
    assert_eq!(eval("date(\"not a date\")"), Value::Null);
}

#[test]
fn builtins_and_unknown_functions() {
    assert_eq!(string("max(1, 5, 3)"), "5");
    assert_eq!(string("min([4, 2])"), "2");
    assert_eq!(string("sum([1, 2.5])"), "3.5");
    assert_eq!(string("count([1, 2])"), "2");
    assert_eq!(string("string length(\"héllo\")"), "5");
    assert_eq!(string("upper case(\"abc\")"), "ABC");
    assert_eq!(string("substring(\"foobar\", 3, 2)"), "ob");
    assert_eq!(string("decimal(2.345, 2)"), "2.34");
    assert_eq!(string("modulo(-7, 3)"), "2");
    assert_eq!(string("list contains([1, 2], 2)"), "true");
    let e = Expression::parse("now() + foo(1)", &[]).unwrap();
    assert_eq!(e.unknown_functions(), vec!["now", "foo"]);
    assert_eq!(e.eval(&Vec::new()), Value::Null);
}

#[test]
fn unary_tests_match_like_a_decision_table() {
    assert_eq!(test("-", json!(null)), Some(true));
    assert_eq!(test("< 10", json!(5)), Some(true));
    assert_eq!(test("< 10", json!(10)), Some(false));
    assert_eq!(test("[1..10]", json!(10)), Some(true));
    assert_eq!(test("]0..5)", json!(0)), Some(false));
    assert_eq!(test("]0..5)", json!(4.9)), Some(true));
    assert_eq!(test("[low..high]", json!(3)), Some(true));
    assert_eq!(test("\"a\",\"b\"", json!("b")), Some(true));
    assert_eq!(test("\"a\",\"b\"", json!("c")), Some(false));
    assert_eq!(test("not(\"x\")", json!("y")), Some(true));
    assert_eq!(test("not(\"x\", \"y\")", json!("y")), Some(false));
    assert_eq!(test("true", json!(false)), Some(false));
    assert_eq!(test("? > 5", json!(6)), Some(true));
    assert_eq!(test("colours", json!("red")), Some(true));
    assert_eq!(test("< 18, >= 60", json!(70)), Some(true));
    assert_eq!(test("< 10", json!("text")), None);
    assert_eq!(test("date(\"2024-01-01\")", json!("2024-01-01")), None);
}

#[test]
fn problems_are_reported_with_their_offset() {
    let err = UnaryTests::parse("> 10 +", &[]).unwrap_err();
    assert_eq!(err.offset, 6);
    let err = Expression::parse("a +\n  * 2", &[]).unwrap_err();
    assert_eq!(err.line_col("a +\n  * 2"), (2, 3));
    assert!(Expression::parse("for x in [1] return x", &[])
        .unwrap_err()
        .message
        .contains("not supported"));
}
