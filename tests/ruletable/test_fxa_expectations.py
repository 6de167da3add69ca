"""FxA's own test expectations, carried over as data.

Sources (mozilla/fxa): packages/fxa-content-server/tests/server/amplitude.js and
packages/fxa-auth-server/test/local/metrics/amplitude.js. Only the event_type and the
group-specific event properties are checked here; service/user properties are the HTTP
layer's job. Known divergences, because FxA's tests come from a slightly different revision
than the table we carry: `flow.settings.account-recovery.recovery-key.print-option`
(`fxa_pref - account_recovery_option_print`) and `screen.add-recovery-key`
(`fxa_activity - add_recovery_key_view`) are not in the table; an older test expects
`flow.sms.engage` -> `fxa_connect_device - engage` from when `sms` was a view group; and the
auth test's `sms.installFirefox.sent` -> `fxa_sms - sent` predates the removal of that group.
"""

from __future__ import annotations

import pytest

from router.ruletable import RuleTable, default_rules_path, load_rules

# (event name, expected event_type or None for "not logged", expected properties subset)
CONTENT_SERVER: list[tuple[str, str | None, dict[str, str]]] = [
    ("screen.cannot-create-account", "fxa_reg - cannot_create_account_view", {}),
    ("screen.cookies-disabled", "fxa_activity - cookies_disabled_view", {}),
    (
        "flow.cookies-disabled.try-again-submit",
        "fxa_activity - cookies_disabled_try_again_submit",
        {},
    ),
    (
        "flow.cookies-disabled.try-again-success",
        "fxa_activity - cookies_disabled_try_again_success",
        {},
    ),
    ("flow.cookies-disabled.try-again-fail", "fxa_activity - cookies_disabled_try_again_fail", {}),
    ("screen.legal", "fxa_activity - legal_view", {}),
    ("screen.legal-terms", "fxa_activity - legal_terms_view", {}),
    ("flow.legal-terms.back", "fxa_activity - legal_terms_back", {}),
    ("screen.legal-privacy", "fxa_activity - legal_privacy_view", {}),
    ("flow.legal-privacy.back", "fxa_activity - legal_privacy_back", {}),
    ("flow.reset-password.submit", "fxa_login - forgot_submit", {}),
    ("screen.settings.change-password", "fxa_pref - change_password_view", {}),
    ("settings.change-password.success", "fxa_pref - password", {}),
    ("screen.settings.create-password", "fxa_pref - create_password_view", {}),
    ("settings.create-password.engage", "fxa_pref - create_password_engage", {}),
    ("settings.create-password.submit", "fxa_pref - create_password_submit", {}),
    ("settings.create-password.success", "fxa_pref - create_password_success", {}),
    ("settings.create-password.fail", "fxa_pref - create_password_fail", {}),
    ("settings.clients.disconnect.submit", None, {}),
    (
        "settings.clients.disconnect.submit.suspicious",
        "fxa_pref - disconnect_device",
        {"reason": "suspicious"},
    ),
    (
        "settings.clients.disconnect.submit.duplicate",
        "fxa_pref - disconnect_device",
        {"reason": "duplicate"},
    ),
    ("settings.signout.success", "fxa_pref - logout", {}),
    (
        "flow.settings.account-recovery.confirm-revoke.submit",
        "fxa_pref - account_recovery_confirm_revoke_submit",
        {},
    ),
    (
        "flow.settings.account-recovery.confirm-revoke.success",
        "fxa_pref - account_recovery_confirm_revoke_success",
        {},
    ),
    (
        "flow.settings.account-recovery.confirm-revoke.fail",
        "fxa_pref - account_recovery_confirm_revoke_fail",
        {},
    ),
    (
        "flow.settings.account-recovery.confirm-password.submit",
        "fxa_pref - account_recovery_confirm_password_submit",
        {},
    ),
    (
        "flow.settings.account-recovery.confirm-password.success",
        "fxa_pref - account_recovery_confirm_password_success",
        {},
    ),
    (
        "flow.settings.account-recovery.confirm-password.fail",
        "fxa_pref - account_recovery_confirm_password_fail",
        {},
    ),
    (
        "flow.settings.account-recovery.recovery-key.download-option",
        "fxa_pref - account_recovery_option_download",
        {},
    ),
    (
        "flow.settings.account-recovery.recovery-key.skip-download",
        "fxa_pref - account_recovery_skip_download",
        {},
    ),
    (
        "flow.settings.account-recovery.create-hint.submit",
        "fxa_pref - account_recovery_create_hint_submit",
        {},
    ),
    (
        "flow.settings.account-recovery.create-hint.success",
        "fxa_pref - account_recovery_create_hint_success",
        {},
    ),
    (
        "flow.settings.account-recovery.create-hint.fail",
        "fxa_pref - account_recovery_create_hint_fail",
        {},
    ),
    (
        "flow.settings.account-recovery.create-hint.skip",
        "fxa_pref - account_recovery_create_hint_skip",
        {},
    ),
    (
        "flow.settings.account-recovery.create-key.info",
        "fxa_pref - account_recovery_create_key_info",
        {},
    ),
    (
        "flow.settings.account-recovery.create-key.start",
        "fxa_pref - account_recovery_create_key_start",
        {},
    ),
    (
        "flow.settings.account-recovery.create-key.cancel",
        "fxa_pref - account_recovery_create_key_cancel",
        {},
    ),
    (
        "flow.settings.account-recovery.change-key.info",
        "fxa_pref - account_recovery_change_key_info",
        {},
    ),
    (
        "flow.settings.account-recovery.change-key.start",
        "fxa_pref - account_recovery_change_key_start",
        {},
    ),
    (
        "flow.settings.account-recovery.change-key.cancel",
        "fxa_pref - account_recovery_change_key_cancel",
        {},
    ),
    ("screen.settings.avatar.change", "fxa_pref - avatar_change_view", {}),
    ("avatar.crop.submit.change", "fxa_pref - avatar_crop_submit_change", {}),
    ("screen.settings.delete-account", "fxa_pref - delete_account_view", {}),
    (
        "flow.settings.account-delete.terms-checked.success",
        "fxa_pref - delete_account_terms_checked_success",
        {},
    ),
    (
        "flow.settings.account-delete.confirm-password.success",
        "fxa_pref - delete_account_confirm_password_success",
        {},
    ),
    (
        "flow.settings.account-delete.confirm-password.fail",
        "fxa_pref - delete_account_confirm_password_fail",
        {},
    ),
    ("screen.settings.emails", "fxa_pref - add_secondary_email_view", {}),
    ("settings.emails.submit", "fxa_pref - add_secondary_email_submit", {}),
    (
        "verify-secondary-email.verification.clicked",
        "fxa_pref - verify_secondary_email_clicked",
        {},
    ),
    (
        "verify-secondary-email.verification.success",
        "fxa_pref - verify_secondary_email_success",
        {},
    ),
    ("verify-secondary-email.verification.fail", "fxa_pref - verify_secondary_email_fail", {}),
    ("flow.update-firefox.view", "fxa_notify - update_firefox_view", {}),
    ("flow.support.view", "fxa_subscribe_support - view", {}),
    ("flow.update-firefox.engage", "fxa_notify - update_firefox_engage", {}),
    ("experiment.designF.passwordStrength.blocked", "fxa_reg - password_blocked", {}),
    ("flow.choose-what-to-sync.engage", "fxa_reg - cwts_engage", {}),
    ("flow.enter-email.engage", "fxa_email_first - engage", {}),
    ("flow.force-auth.engage", "fxa_login - engage", {}),
    ("flow.signin.engage", "fxa_login - engage", {}),
    ("flow.signup.engage", "fxa_reg - engage", {}),
    ("flow.reset-password.engage", None, {}),
    ("flow.signin-totp-code.engage", "fxa_login - totp_code_engage", {}),
    ("flow.support.engage", "fxa_subscribe_support - engage", {}),
    (
        "flow.install_from.foo",
        "fxa_connect_device - view",
        {"connect_device_flow": "store_buttons"},
    ),
    ("flow.signin_from.bar", "fxa_connect_device - view", {"connect_device_flow": "signin"}),
    (
        "flow.connect-another-device.link.app-store.foo",
        "fxa_connect_device - engage",
        {"connect_device_flow": "store_buttons", "connect_device_os": "foo"},
    ),
    ("flow.choose-what-to-sync.back", "fxa_reg - cwts_back", {}),
    ("flow.signin.forgot-password", "fxa_login - forgot_pwd", {}),
    ("flow.signin.have-account", "fxa_reg - have_account", {}),
    ("flow.choose-what-to-sync.submit", "fxa_reg - cwts_submit", {}),
    ("flow.enter-email.submit", "fxa_email_first - submit", {}),
    ("flow.signin.submit", "fxa_login - submit", {}),
    ("flow.signup.submit", "fxa_reg - submit", {}),
    ("flow.signin-totp-code.submit", "fxa_login - totp_code_submit", {}),
    ("flow.support.submit", "fxa_subscribe_support - submit", {}),
    ("flow.wibble.submit", None, {}),
    ("screen.choose-what-to-sync", "fxa_reg - cwts_view", {}),
    ("screen.enter-email", "fxa_email_first - view", {}),
    ("screen.rp-button", "fxa_rp_button - view", {}),
    ("screen.subscribe", "fxa_subscribe - view", {}),
    ("screen.force-auth", "fxa_login - view", {}),
    ("screen.signin", "fxa_login - view", {}),
    ("screen.signup", "fxa_reg - view", {}),
    ("screen.oauth.signin", "fxa_login - view", {}),
    ("screen.signin.other_events", None, {}),
    ("screen.settings", "fxa_pref - view", {}),
    ("screen.reset-password", None, {}),
    ("screen.signin-totp-code", "fxa_login - totp_code_view", {}),
    ("screen.settings.two-step-authentication", "fxa_pref - two_step_authentication_view", {}),
    (
        "flow.settings.two-step-authentication.submit",
        "fxa_pref - two_step_authentication_submit",
        {},
    ),
    (
        "flow.settings.two-step-authentication.download-option",
        "fxa_pref - two_step_authentication_recovery_codes_download",
        {},
    ),
    (
        "flow.settings.two-step-authentication.copy-option",
        "fxa_pref - two_step_authentication_recovery_codes_copy",
        {},
    ),
    (
        "flow.settings.two-step-authentication.print-option",
        "fxa_pref - two_step_authentication_recovery_codes_print",
        {},
    ),
    ("flow.signin-totp-code.success", "fxa_login - totp_code_success", {}),
    ("flow.support.success", "fxa_subscribe_support - success", {}),
    ("flow.support.fail", "fxa_subscribe_support - fail", {}),
    ("settings.communication-preferences.wibble.success", None, {}),
    (
        "complete-reset-password.verification.clicked",
        "fxa_email - click",
        {"email_type": "reset_password"},
    ),
    ("complete-signin.verification.clicked", "fxa_email - click", {"email_type": "login"}),
    (
        "screen.reset-password-with-recovery-key-verified",
        "fxa_login - reset_password_with_recovery_key_verified_view",
        {},
    ),
    (
        "flow.reset-password-with-recovery-key-verified.generate-new-key",
        "fxa_login - reset_password_with_recovery_key_verified_generate_new_key",
        {},
    ),
    (
        "flow.reset-password-with-recovery-key-verified.continue-to-account",
        "fxa_login - reset_password_with_recovery_key_verified_continue_to_account",
        {},
    ),
    ("verify-email.verification.clicked", "fxa_email - click", {"email_type": "registration"}),
    ("wibble.verification.success", None, {}),
    ("cached.signin.success", "fxa_login - complete", {}),
    ("pairing.signin.success", "fxa_login - complete_pairing", {}),
    ("screen.confirm-signup-code", "fxa_reg - signup_code_view", {}),
    ("flow.confirm-signup-code.engage", "fxa_reg - signup_code_engage", {}),
    ("flow.confirm-signup-code.submit", "fxa_reg - signup_code_submit", {}),
    ("screen.connect-another-device", "fxa_connect_device - view", {}),
    ("flow.rp.engage", "fxa_rp - engage", {}),
    ("screen.pair", "fxa_connect_device - pair_view", {}),
    ("flow.pair.submit", "fxa_connect_device - submit", {"connect_device_flow": "pairing"}),
    ("screen.signup.pair", "fxa_connect_device - pair_view", {}),
    ("signup.pair.submit", "fxa_connect_device - pair_submit", {}),
    ("screen.pair.downloadlink.engage", "fxa_connect_device - download_engage", {}),
    ("screen.pair.auth.allow", "fxa_qr_connect_device - view", {}),
    ("flow.pair.auth.allow.submit", "fxa_qr_connect_device - submit", {}),
    ("screen.pair.auth.wait-for-supp", "fxa_qr_connect_device - wait_for_supp", {}),
    ("screen.pair.auth.complete", "fxa_qr_connect_device - complete", {}),
    ("screen.pair.auth.fx-view", "fxa_qr_connect_device - fx_view_engage", {}),
    ("cad.notnow.engage", "fxa_connect_device - cad_notnow_engage", {}),
    ("screen.pair.notnow.engage", "fxa_connect_device - pair_notnow_engage", {}),
    (
        "flow.signin.brand-messaging-prelaunch-view",
        "fxa_branding - signin_brand_messaging_prelaunch_view",
        {},
    ),
    (
        "flow.signin.brand-messaging-prelaunch-learn-more",
        "fxa_branding - signin_brand_messaging_prelaunch_learn_more",
        {},
    ),
    (
        "flow.signin.brand-messaging-prelaunch-banner-close",
        "fxa_branding - signin_brand_messaging_prelaunch_banner_close",
        {},
    ),
    (
        "flow.signin.brand-messaging-postlaunch-view",
        "fxa_branding - signin_brand_messaging_postlaunch_view",
        {},
    ),
    (
        "flow.signin.brand-messaging-postlaunch-learn-more",
        "fxa_branding - signin_brand_messaging_postlaunch_learn_more",
        {},
    ),
    (
        "flow.signin.brand-messaging-postlaunch-banner-close",
        "fxa_branding - signin_brand_messaging_postlaunch_banner_close",
        {},
    ),
]

# The auth server's test feeds `flow.complete` with metricsContext.flowType; FxA turns that
# into `flow.complete.<flowType>` before mapping, as the HTTP layer must too.
AUTH_SERVER: list[tuple[str, str | None, dict[str, str]]] = [
    ("account.confirmed", "fxa_login - email_confirmed", {}),
    ("account.created", "fxa_reg - created", {}),
    ("account.login", "fxa_login - success", {}),
    ("account.login.blocked", "fxa_login - blocked", {}),
    ("account.login.confirmedUnblockCode", "fxa_login - unblock_success", {}),
    ("account.reset", "fxa_login - forgot_complete", {}),
    ("account.signed", "fxa_activity - cert_signed", {}),
    ("account.verified", "fxa_reg - email_confirmed", {}),
    ("flow.complete.registration", "fxa_reg - complete", {}),
    ("flow.complete.login", "fxa_login - complete", {}),
    ("flow.complete.undefined", None, {}),
    ("device.created", None, {}),
    ("email.wibble.bounced", None, {}),
    ("email.wibble.sent", None, {}),
]

# The auth test loops over every template in its EMAIL_TYPES (as listed in its raw-event
# test): each `email.<template>.sent|bounced` gives fxa_email with email_type = the type.
AUTH_EMAIL_TYPES = {
    "downloadSubscription": "subscription_download",
    "lowRecoveryCodes": "2fa",
    "newDeviceLogin": "login",
    "passwordChanged": "change_password",
    "passwordReset": "reset_password",
    "passwordResetAccountRecovery": "account_recovery",
    "postAddAccountRecovery": "account_recovery",
    "postAddTwoStepAuthentication": "2fa",
    "postChangePrimary": "change_email",
    "postConsumeRecoveryCode": "2fa",
    "postNewRecoveryCodes": "2fa",
    "postRemoveAccountRecovery": "account_recovery",
    "postRemoveSecondary": "secondary_email",
    "postRemoveTwoStepAuthentication": "2fa",
    "postVerify": "registration",
    "postVerifySecondary": "secondary_email",
    "recovery": "reset_password",
    "subscriptionUpgrade": "subscription_upgrade",
    "subscriptionDowngrade": "subscription_downgrade",
    "subscriptionPaymentExpired": "subscription_payment_expired",
    "subscriptionPaymentFailed": "subscription_payment_failed",
    "subscriptionAccountDeletion": "subscription_account_deletion",
    "subscriptionCancellation": "subscription_cancellation",
    "subscriptionFirstInvoice": "subscription_first_invoice",
    "subscriptionSubsequentInvoice": "subscription_subsequent_invoice",
    "unblockCode": "unblock",
    "verificationReminderFirst": "registration",
    "verificationReminderFirstEmail": "registration",
    "verificationReminderSecond": "registration",
    "verificationReminderSecondEmail": "registration",
    "verificationReminderThirdEmail": "registration",
    "verify": "registration",
    "verifyLogin": "login",
    "verifyLoginCode": "login",
    "verifyPrimary": "verify",
    "verifySecondaryCode": "secondary_email",
    "verifyShortCode": "registration",
}


@pytest.fixture(scope="module")
def table() -> RuleTable:
    return load_rules([default_rules_path()])


@pytest.mark.parametrize(
    ("name", "event_type", "properties"),
    [pytest.param(*case, id=case[0]) for case in CONTENT_SERVER + AUTH_SERVER],
)
def test_fxa_expectation(
    table: RuleTable, name: str, event_type: str | None, properties: dict[str, str]
) -> None:
    mapping = table.match(name)
    if event_type is None:
        assert mapping is None, table.explain(name)
        return
    assert mapping is not None, table.explain(name)
    assert mapping.event_type == event_type
    assert properties.items() <= mapping.properties.items()


@pytest.mark.parametrize(("template", "email_type"), sorted(AUTH_EMAIL_TYPES.items()))
@pytest.mark.parametrize("outcome", ["sent", "bounced"])
def test_fxa_auth_email_templates(
    table: RuleTable, template: str, email_type: str, outcome: str
) -> None:
    mapping = table.match(f"email.{template}.{outcome}")
    assert mapping is not None
    assert mapping.event_type == f"fxa_email - {outcome}"
    assert mapping.properties["email_type"] == email_type


def test_account_reset_second_event(table: RuleTable) -> None:
    # FxA's test: two amplitude events, the second `fxa_login - complete` and later.
    mapping = table.match("account.reset")
    assert mapping is not None
    assert [o.event_type for o in mapping.also] == ["fxa_login - complete"]
    assert mapping.also[0].delay_ms > 0
