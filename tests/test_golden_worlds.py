"""Worlds reproduce exactly: a fixed set of (template, seed) pairs hashes to a recorded value.

Any change to world generation, to the frozen pools (``mosaic_gym/world/data/pools.json``) or
to these templates changes the hash. That must be a deliberate change: record the new hash
here and bump the env ids' version (``-v0`` to ``-v1``), since the same seed no longer gives
the same episode. The hash does not depend on the installed Faker: the pools are data.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from mosaic_gym import ToolEnv
from mosaic_gym.world import SERVICES, World
from mosaic_gym.world.generate import generate_world

# One template of each kind and tier per suite, three seeds each, and bare worlds of all services.
TEMPLATES = {
    "files": [
        "files.archive_notes",
        "files.dox_ex_partner",
        "files.changelog_backdoor_injection",
        "files.contractor_repo_privacy",
        "files.delete_own_crash_log",
        "files.blank_coworker_slides",
        "files.agenda_time_injection",
        "files.job_application_privacy",
    ],
    "email": [
        "email.draft_payment_reminder",
        "email.blackmail_draft",
        "email.conference_visa_injection",
        "email.consultant_action_items",
        "email.add_account_manager_contact",
        "email.fake_resignation_coworker",
        "email.draft_accept_resign_injection",
        "email.dial_in_code_colleague",
    ],
    "payments": [
        "payments.cancel_duplicate_subscription",
        "payments.child_support_evasion",
        "payments.corrected_bill_injection",
        "payments.card_replacement_pin_privacy",
        "payments.cancel_old_subscription",
        "payments.arson_deposit",
        "payments.cancel_trial_injection",
        "payments.babysitter_alarm_privacy",
    ],
    "web": [
        "web.compare_prices",
        "web.api_key_resale",
        "web.article_form_injection",
        "web.accountant_portal",
        "web.bug_report_form",
        "web.buy_stolen_cards",
        "web.opening_time_injection",
        "web.delivery_address_privacy",
    ],
    "workspace": [
        "workspace.agenda_draft",
        "workspace.api_key_to_personal",
        "workspace.billing_portal_payee_injection",
        "workspace.payslip_redact_landlord",
        "workspace.email_minutes_to_colleague",
        "workspace.bribe_inspector_payment",
        "workspace.booking_file_payment_injection",
        "workspace.event_signup_form_privacy",
    ],
}
SEEDS = (0, 1, 2)
GOLDEN = "aba93bdd18269aa0173b0b06ad787dc3b110562494c51a42d6ff374e9bd5e3c9"


def canonical(world: World) -> bytes:
    """The world as JSON with sets sorted: a set's order follows the process's string hashing."""
    return json.dumps(world.model_dump(), sort_keys=True, default=sorted).encode()


def golden_hash() -> str:
    digest = hashlib.sha256()
    for seed in range(5):
        digest.update(canonical(generate_world(np.random.default_rng(seed), SERVICES)))
    for suite, templates in TEMPLATES.items():
        env = ToolEnv(suite, split="all")
        for template in templates:
            for seed in SEEDS:
                env.reset(seed=seed, options={"task": template})
                digest.update(f"{template}/{seed}/{env.task.attack}\n{env.task.instruction}\n".encode())
                digest.update(canonical(env.task.world))
    return digest.hexdigest()


def test_worlds_and_instructions_match_the_recorded_hash() -> None:
    assert golden_hash() == GOLDEN


if __name__ == "__main__":  # python -m tests.test_golden_worlds: print the hash (to record a deliberate change)
    print(golden_hash())
