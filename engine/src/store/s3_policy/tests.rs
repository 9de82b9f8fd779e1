use super::*;

#[test]
fn whole_days_round_up_and_are_at_least_one() {
    assert_eq!(whole_days(0), 1);
    assert_eq!(whole_days(1), 1);
    assert_eq!(whole_days(DAY_SECS), 1);
    assert_eq!(whole_days(DAY_SECS + 1), 2);
    assert_eq!(whole_days(45 * DAY_SECS), 45);
    assert_eq!(whole_days(u64::MAX), i32::MAX);
}

#[test]
fn the_policy_names_its_days() {
    let p = BucketPolicy {
        noncurrent_days: 45,
        default_encryption: None,
    };
    assert_eq!(
        p.describe(PolicyPart::NoncurrentExpiration),
        "noncurrent versions expire after 45 days"
    );
    assert_eq!(
        p.describe(PolicyPart::AbortIncompleteMultipart),
        "incomplete multipart uploads aborted after 7 days"
    );
}

#[test]
fn only_an_enabled_expiry_by_days_or_date_expires_current_objects() {
    let marker_rule = LifecycleRuleInfo {
        id: Some("tierback-expired-delete-markers".into()),
        enabled: true,
        prefix: Some(String::new()),
        current_expiry: None,
        expired_delete_markers: true,
        noncurrent_days: None,
        abort_multipart_days: None,
    };
    assert!(!marker_rule.expires_current_objects());
    let by_days = LifecycleRuleInfo {
        id: Some("tierback-expire".into()),
        current_expiry: Some(CurrentExpiry::AfterDays(90)),
        expired_delete_markers: false,
        ..marker_rule.clone()
    };
    assert!(by_days.expires_current_objects());
    assert_eq!(by_days.describe_expiry(), "after 90 days, whole bucket");
    let by_date = LifecycleRuleInfo {
        current_expiry: Some(CurrentExpiry::OnDate(1_893_456_000)),
        prefix: Some("tierback/".into()),
        ..by_days.clone()
    };
    assert!(by_date.expires_current_objects());
    assert_eq!(
        by_date.describe_expiry(),
        "on 2030-01-01T00:00:00Z, prefix \"tierback/\""
    );
    let disabled = LifecycleRuleInfo {
        enabled: false,
        ..by_days
    };
    assert!(!disabled.expires_current_objects());
    assert_eq!(
        disabled.describe(),
        "current objects expire after 90 days, whole bucket, disabled"
    );
    assert_eq!(
        marker_rule.describe(),
        "expired delete markers removed, whole bucket"
    );
}
