//! Property tests for the money arithmetic and cost math.

use custos_finops::{Amount, Rates, Usage};
use proptest::prelude::*;

fn amount() -> impl Strategy<Value = Amount> {
    (-10_000_000_000_000_000i128..10_000_000_000_000_000i128).prop_map(Amount::from_nanos)
}

fn rate() -> impl Strategy<Value = Amount> {
    (0i128..1_000_000_000_000).prop_map(Amount::from_nanos)
}

proptest! {
    #[test]
    fn display_parses_back_exactly(a in amount()) {
        prop_assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,40}") {
        let _ = s.parse::<Amount>();
        let _ = Amount::parse_rounded(&s, 6);
    }

    #[test]
    fn shifting_is_multiplying(int in 0u64..1_000_000, frac in 0u32..1_000_000) {
        // x per token = x × 10⁶ per million, with no float on the way.
        let s = format!("{int}.{frac:06}");
        let per_token = Amount::parse_rounded(&s, 0).unwrap();
        let per_million = Amount::parse_rounded(&s, 6).unwrap();
        prop_assert_eq!(per_token.nanos() * 1_000_000, per_million.nanos());
    }

    #[test]
    fn rounding_is_within_half_a_step(a in amount(), dp in 0u32..9) {
        let r = a.round_dp(dp);
        let step = 10i128.pow(9 - dp);
        prop_assert!((r.nanos() - a.nanos()).abs() * 2 <= step);
        prop_assert_eq!(r.nanos() % step, 0);
    }

    #[test]
    fn cost_is_linear_up_to_one_rounding(
        input in rate(), output in rate(), cached in rate(),
        a in (0u64..10_000_000, 0u64..10_000_000, 0u64..1_000_000),
        b in (0u64..10_000_000, 0u64..10_000_000, 0u64..1_000_000),
    ) {
        let r = Rates { input_per_1m: input, output_per_1m: output, cached_input_per_1m: Some(cached), ..Rates::default() };
        let u = |(i, o, c): (u64, u64, u64)| Usage { input_tokens: i, output_tokens: o, cached_input_tokens: c, ..Usage::default() };
        let both = Usage { input_tokens: a.0 + b.0, output_tokens: a.1 + b.1, cached_input_tokens: a.2 + b.2, ..Usage::default() };
        let sum = r.cost(&u(a)).unwrap().nanos() + r.cost(&u(b)).unwrap().nanos();
        let whole = r.cost(&both).unwrap().nanos();
        // Each cost is rounded once, so two costs differ from the whole by at most one nano.
        prop_assert!((sum - whole).abs() <= 1, "{} vs {}", sum, whole);
        prop_assert!(whole >= 0);
    }

    #[test]
    fn cost_matches_exact_rational(tokens in 0u64..1_000_000_000, rate in rate()) {
        let r = Rates { input_per_1m: rate, ..Rates::default() };
        let cost = r.cost(&Usage { input_tokens: tokens, ..Usage::default() }).unwrap().nanos();
        // cost = tokens × rate / 10⁶, rounded to the nearest nano.
        let exact_num = tokens as i128 * rate.nanos();
        prop_assert!((cost * 1_000_000 - exact_num).abs() * 2 <= 1_000_000);
    }
}

proptest::proptest! {
    /// Matching bill lines to models is total over any text, and a name names itself.
    #[test]
    fn bill_line_matching_is_total(hay in "\\PC{0,64}", name in "\\PC{0,16}") {
        let _ = custos_finops::reconcile::names_model(&hay.to_lowercase(), &name.to_lowercase());
    }

    #[test]
    fn a_model_name_names_itself(name in "[a-z][a-z0-9-]{0,12}[a-z0-9]", suffix in "( input| output|-2024-08-06)?") {
        let hay = format!("{name}{suffix}");
        proptest::prop_assert!(custos_finops::reconcile::names_model(&hay, &name));
    }
}
