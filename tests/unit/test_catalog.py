"""The catalog loader: the example loads, and every broken catalog says where and how to fix it.

Each test copies examples/catalog into tmp_path and breaks one thing by text replacement,
so line numbers below are those of the example files.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from starter.commands.catalog import app
from switchyard.catalog.loader import CatalogError, Problem, load_catalog, validate_catalog
from switchyard.catalog.models import TraitType

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "catalog"
CRM = "destinations/crm_webhook.yaml"
RETENTION = "destinations/retention_webhook.yaml"
CHURN = "audiences/churn_risk_paid.yaml"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXAMPLE, tmp_path / "catalog"))


def edit(root: Path, name: str, old: str, new: str) -> None:
    file = root / name
    text = file.read_text()
    assert old in text, f"{old!r} not in {name}"
    file.write_text(text.replace(old, new, 1))


def problems(root: Path, env: dict[str, str] | None = None) -> list[Problem]:
    return validate_catalog(root, env={} if env is None else env)


def one(root: Path, env: dict[str, str] | None = None) -> Problem:
    found = problems(root, env)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def at(problem: Problem, root: Path, name: str, line: int | None, location: str) -> None:
    assert (problem.file, problem.line, problem.location) == (root / name, line, location), problem


# --- the example ------------------------------------------------------------------------


def test_example_catalog_loads() -> None:
    catalog = load_catalog(EXAMPLE, env={})
    assert (len(catalog.traits), len(catalog.audiences)) == (17, 2)
    assert (len(catalog.destinations), len(catalog.syncs)) == (6, 6)
    assert {d.kind for d in catalog.destinations.values()} == {
        "webhook",
        "hubspot",
        "braze",
        "meta",
        "file_export",
    }
    crm = catalog.destinations["crm_webhook"]
    assert crm.config.url == "http://127.0.0.1:8787/hooks/crm"
    assert crm.contract.freshness_sla == timedelta(hours=6)
    assert catalog.plan_for("high_value_to_crm").audience.name == "high_value_customers"


def test_secret_env_is_not_required_at_load_time() -> None:
    # SWITCHYARD_WEBHOOK_SECRET is read when a run sends, not when the catalog loads.
    assert problems(EXAMPLE, env={}) == []


# --- interpolation ----------------------------------------------------------------------


def test_interpolation_uses_environment_then_default(root: Path) -> None:
    env = {"SWITCHYARD_WEBHOOK_URL": "https://hooks.example.com"}
    catalog = load_catalog(root, env=env)
    assert catalog.destinations["crm_webhook"].config.url == "https://hooks.example.com/hooks/crm"
    edit(root, CHURN, "> 0.7", "> ${CHURN_THRESHOLD:-0.8}")
    edit(root, CRM, "owner: crm-team", "owner: ${CRM_OWNER}")
    catalog = load_catalog(root, env={"CRM_OWNER": "crm-platform"})
    assert "churn_risk > 0.8" in catalog.audiences["churn_risk_paid"].sql
    assert catalog.destinations["crm_webhook"].owner == "crm-platform"


def test_unset_variable_without_default_names_it(root: Path) -> None:
    edit(root, CRM, "url: ${SWITCHYARD_WEBHOOK_URL:-http://127.0.0.1:8787}", "url: ${HOOK_BASE}")
    problem = one(root)
    at(problem, root, CRM, 7, "destination.config.url")
    assert "HOOK_BASE" in problem.message
    assert "${HOOK_BASE:-" in problem.fix


def test_values_from_the_environment_are_never_echoed(root: Path) -> None:
    edit(root, CRM, "url: ${SWITCHYARD_WEBHOOK_URL:-http://127.0.0.1:8787}", "url: ${HOOK_BASE}")
    problem = one(root, env={"HOOK_BASE": "ftp://token-s3cr3t@example.com"})
    at(problem, root, CRM, 7, "destination.config.url")
    assert "s3cr3t" not in str(problem)
    assert "http" in problem.fix


def test_dollar_dollar_is_a_literal(root: Path) -> None:
    edit(root, CRM, "description: The", "description: $${NOT_A_VAR} The")
    assert (
        load_catalog(root, env={})
        .destinations["crm_webhook"]
        .description.startswith("${NOT_A_VAR}")
    )


# --- YAML itself --------------------------------------------------------------------------


def test_yaml_syntax_error_reports_its_line(root: Path) -> None:
    edit(root, CRM, "    batch_size: 1000", "    batch_size: [1000")
    problem = one(root)
    # PyYAML notices on the next line; the message points back at where the list opened.
    assert (problem.file, problem.line) == (root / CRM, 23)
    assert problem.message.startswith("YAML syntax")
    assert "started on line 22" in problem.message


def test_duplicate_key_is_a_problem(root: Path) -> None:
    edit(root, CHURN, "  owner: retention\n", "  owner: retention\n  owner: growth\n")
    problem = one(root)
    at(problem, root, CHURN, 5, "audience.owner")
    assert "duplicate key 'owner'" in problem.message
    assert "line 4" in problem.message


def test_missing_files_and_root_are_problems_not_crashes(root: Path) -> None:
    (root / "traits.yaml").unlink()
    (root / "syncs.yaml").unlink()
    found = problems(root)
    assert {(p.file.name, p.message) for p in found} >= {
        ("traits.yaml", "file not found"),
        ("syncs.yaml", "file not found"),
    }
    missing = problems(root / "nope")
    assert [(p.file, p.message) for p in missing] == [
        (root / "nope", "catalog directory does not exist")
    ]


def test_empty_and_misshapen_files(root: Path) -> None:
    (root / "syncs.yaml").write_text("")
    (root / "audiences" / "churn_risk_paid.yaml").write_text("audiences:\n  name: x\n")
    found = {(p.file.name, p.line, p.message) for p in problems(root)}
    assert ("syncs.yaml", None, "file is empty") in found
    assert ("churn_risk_paid.yaml", 1, "unknown top-level key 'audiences'") in found
    assert ("churn_risk_paid.yaml", 1, "missing top-level key 'audience'") in found


# --- pydantic errors, translated ------------------------------------------------------


def test_unknown_field_suggests_the_close_one(root: Path) -> None:
    edit(root, CRM, "batch_size: 1000", "bach_size: 1000")
    problem = one(root)
    at(problem, root, CRM, 22, "destination.contract.bach_size")
    assert problem.message == "unknown field 'bach_size'"
    assert problem.fix == "did you mean 'batch_size'?"


def test_error_inside_a_list_item_points_at_its_line(root: Path) -> None:
    edit(root, CRM, "max_length: 80}", "max_length: 0}")
    problem = one(root)
    at(problem, root, CRM, 13, "destination.contract.fields[0].max_length")
    assert "at least 1" in problem.message


def test_bad_name_explains_the_pattern(root: Path) -> None:
    edit(root, RETENTION, "name: retention_webhook", "name: Retention-Webhook")
    edit(root, "syncs.yaml", "retention_webhook", "Retention-Webhook")
    found = problems(root)
    assert len(found) == 2, found  # the name in the file and the reference in syncs.yaml
    problem = next(p for p in found if p.file == root / RETENTION)
    at(problem, root, RETENTION, 2, "destination.name")
    assert "lowercase letters, digits and underscores, starting with a letter" in problem.fix
    assert "'retention_webhook'" in problem.fix


def test_enum_error_lists_allowed_values(root: Path) -> None:
    edit(root, "traits.yaml", "{name: city, type: string", "{name: city, type: text")
    problem = one(root)
    at(problem, root, "traits.yaml", 12, "traits[8].type")
    for value in TraitType:
        assert value.value in problem.fix


def test_enum_typo_gets_a_guess(root: Path) -> None:
    edit(root, CRM, "sync_mode: mirror", "sync_mode: mirorr")
    problem = one(root)
    at(problem, root, CRM, 21, "destination.contract.sync_mode")
    assert problem.fix.startswith("did you mean 'mirror'?")
    assert "upsert" in problem.fix


def test_missing_required_field_is_named(root: Path) -> None:
    edit(root, CRM, "  owner: crm-team\n", "")
    problem = one(root)
    at(problem, root, CRM, 1, "destination.owner")
    assert problem.message == "missing required field 'owner'"


def test_errors_in_the_tagged_config_use_the_document_path(root: Path) -> None:
    edit(root, CRM, "kind: webhook", "kind: webhooks")
    edit(root, RETENTION, "url: ${SWITCHYARD_WEBHOOK_URL:-http://127.0.0.1:8787}", "url: x")
    kind, url = problems(root)
    at(kind, root, CRM, 6, "destination.config.kind")
    assert kind.fix.startswith("did you mean 'webhook'?")
    at(url, root, RETENTION, 7, "destination.config.url")


def test_empty_duration_is_a_problem_not_a_crash(root: Path) -> None:
    edit(root, CRM, "freshness_sla: 6h", "freshness_sla:")
    problem = one(root)
    at(problem, root, CRM, 26, "destination.contract.freshness_sla")
    assert "6h" in problem.fix


def test_field_mapped_twice_points_at_the_duplicate(root: Path) -> None:
    edit(
        root,
        RETENTION,
        "      - {name: churn_risk,",
        "      - {name: plan, source: plan}\n      - {name: churn_risk,",
    )
    problem = one(root)
    at(problem, root, RETENTION, 15, "destination.contract.fields[2].name")
    assert "'plan' is mapped twice" in problem.message


# --- cross-references ---------------------------------------------------------------------


def test_duplicate_audience_names_across_files(root: Path) -> None:
    edit(root, CHURN, "name: churn_risk_paid", "name: high_value_customers")
    found = problems(root)
    duplicate = next(p for p in found if "duplicate" in p.message)
    # Files load in name order: churn_risk_paid.yaml is first, so the second is the duplicate.
    at(duplicate, root, "audiences/high_value_customers.yaml", 2, "audience.name")
    assert f"{root / CHURN}:2" in duplicate.message


def test_sync_with_unknown_audience_and_destination(root: Path) -> None:
    edit(root, "syncs.yaml", "audience: high_value_customers", "audience: high_value_customer")
    edit(root, "syncs.yaml", "destination: retention_webhook", "destination: nowhere")
    audience, destination = problems(root)
    at(audience, root, "syncs.yaml", 3, "syncs[0].audience")
    assert audience.fix == "did you mean 'high_value_customers'?"
    at(destination, root, "syncs.yaml", 8, "syncs[1].destination")
    assert "crm_webhook" in destination.fix and "retention_webhook" in destination.fix


def test_mapping_source_must_be_a_declared_trait(root: Path) -> None:
    edit(root, CRM, "source: orders_count", "source: order_count")
    edit(root, RETENTION, "{name: profile_id, source: profile_id", "{name: profile_id, source: pid")
    crm, retention = problems(root)
    at(crm, root, CRM, 18, "destination.contract.fields[5].source")
    assert crm.fix.startswith("did you mean 'orders_count'?")
    at(retention, root, RETENTION, 11, "destination.contract.identifier.source")


def test_mapping_type_must_fit_the_trait(root: Path) -> None:
    edit(root, CRM, "source: lifetime_value, type: number", "source: lifetime_value, type: email")
    problem = one(root)
    at(problem, root, CRM, 17, "destination.contract.fields[4].type")
    assert problem.message == "trait 'lifetime_value' is number but is mapped as email"
    assert problem.fix == "map it as number"


@pytest.mark.parametrize(
    ("trait", "mapped", "ok"),
    [
        ("plan", "email", True),  # string -> string-like
        ("plan", "phone", True),
        ("email", "string", True),
        ("phone", "string", True),
        ("orders_count", "number", True),  # integer -> number widens
        ("email", "phone", False),
        ("lifetime_value", "integer", False),
        ("signup_at", "date", False),
        ("is_employee", "string", False),
    ],
)
def test_type_compatibility(root: Path, trait: str, mapped: str, ok: bool) -> None:
    edit(root, CRM, "source: plan, type: string", f"source: {trait}, type: {mapped}")
    expected = [] if ok else ["destination.contract.fields[3].type"]
    assert [p.location for p in problems(root)] == expected


def test_required_field_owned_by_destination(root: Path) -> None:
    edit(root, CRM, "owner: destination}", "owner: destination, required: true}")
    problem = one(root)
    at(problem, root, CRM, 20, "destination.contract.fields[7].required")
    assert "owner: switchyard" in problem.fix


def test_audience_sql_with_two_statements_points_at_the_semicolon(root: Path) -> None:
    edit(root, CHURN, "AND churn_risk > 0.7", "AND churn_risk > 0.7;\n    DELETE FROM profiles")
    problem = one(root)
    at(problem, root, CHURN, 10, "audience.sql")
    assert "more than one statement" in problem.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM profiles;",
        "SELECT * FROM profiles WHERE plan = 'a;b';  -- done; really",
        'SELECT "odd;name" FROM profiles /* ; */',
    ],
)
def test_audience_sql_trailing_or_quoted_semicolons_are_fine(root: Path, sql: str) -> None:
    (root / CHURN).write_text(
        f"audience:\n  name: churn_risk_paid\n  version: 1\n  owner: retention\n"
        f"  sql: |\n    {sql}\n"
    )
    assert problems(root) == []


def test_empty_audience_sql(root: Path) -> None:
    edit(root, CHURN, "    SELECT *", "    -- TODO;")
    edit(root, CHURN, "    FROM profiles\n    WHERE plan IN ('pro', 'enterprise')\n", "")
    edit(root, CHURN, "      AND churn_risk > 0.7", "")
    problem = one(root)
    at(problem, root, CHURN, 6, "audience.sql")
    assert problem.message == "audience SQL is empty"


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("0 * * *", "has 4 fields, expected 5"),
        ("0 * * * * *", "has 6 fields, expected 5"),
        ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
        ("0 24 * * *", "hour field '24'"),
        ("0 0 0 * *", "day of month field '0'"),
        ("0 0 * 13 *", "month field '13'"),
        ("0 0 * * 8", "day of week field '8'"),
        ("*/0 * * * *", "step '0'"),
        ("10-5 * * * *", "runs backwards"),
        ("0 0 * * funday", "'funday' is not a number or a name"),
    ],
)
def test_bad_cron_schedule(root: Path, schedule: str, message: str) -> None:
    edit(root, "syncs.yaml", "*/30 * * * *", schedule)
    problem = one(root)
    at(problem, root, "syncs.yaml", 9, "syncs[1].schedule")
    assert message in problem.message


@pytest.mark.parametrize(
    "schedule", ["*/15 9-17 * * mon-fri", "0 0 1,15 jan-jun *", "5/10 * * * 7", "0 6 * * SUN"]
)
def test_good_cron_schedules(root: Path, schedule: str) -> None:
    edit(root, "syncs.yaml", "*/30 * * * *", schedule)
    assert problems(root) == []


def test_cron_macro_gets_the_five_field_equivalent(root: Path) -> None:
    edit(root, "syncs.yaml", "*/30 * * * *", "@daily")
    assert one(root).fix == "write '0 0 * * *' instead"


# --- all at once ----------------------------------------------------------------------------


def test_problems_in_several_files_are_all_reported(root: Path) -> None:
    edit(root, "traits.yaml", "owner: billing", "owner: ''")
    edit(root, CRM, "batch_size: 1000", "bach_size: 1000")
    edit(root, CRM, "source: orders_count", "source: order_count")
    edit(root, CHURN, "version: 1", "version: one")
    edit(root, "syncs.yaml", "destination: crm_webhook", "destination: crm_hook")
    edit(root, "syncs.yaml", "*/30 * * * *", "every 30 minutes")
    with pytest.raises(CatalogError) as caught:
        load_catalog(root, env={})
    where = [(p.file.relative_to(root).as_posix(), p.line) for p in caught.value.problems]
    assert where == [
        (CHURN, 3),
        (CRM, 18),
        (CRM, 22),
        ("syncs.yaml", 4),
        ("syncs.yaml", 9),
        ("traits.yaml", 13),
    ]


def test_catalog_error_renders_one_problem_per_line(root: Path) -> None:
    edit(root, CRM, "batch_size: 1000", "bach_size: 1000")
    edit(root, "syncs.yaml", "audience: churn_risk_paid", "audience: churn_risk")
    with pytest.raises(CatalogError) as caught:
        load_catalog(root, env={})
    assert str(caught.value).splitlines() == [
        f"{root / CRM}:22: destination.contract.bach_size: unknown field 'bach_size'"
        " (fix: did you mean 'batch_size'?)",
        f"{root / 'syncs.yaml'}:7: syncs[1].audience: unknown audience 'churn_risk'"
        " (fix: did you mean 'churn_risk_paid'?)",
    ]


def test_an_invalid_declaration_does_not_cascade(root: Path) -> None:
    # The audience is broken, but it is declared: the sync's reference to it is not unknown.
    edit(root, CHURN, "version: 1", "version: 0")
    assert [p.location for p in problems(root)] == ["audience.version"]


# --- CLI --------------------------------------------------------------------------------------


runner = CliRunner()


def test_cli_validate_example() -> None:
    result = runner.invoke(app, ["validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "17 traits, 2 audiences, 6 destinations, 6 syncs" in result.output


def test_cli_validate_defaults_to_settings(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_CATALOG_DIR", str(root))
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert str(root) in result.output


def test_cli_validate_prints_problems_and_fails(root: Path) -> None:
    edit(root, CRM, "batch_size: 1000", "bach_size: 1000")
    edit(root, "syncs.yaml", "*/30 * * * *", "*/30 * * *")
    result = runner.invoke(app, ["validate", str(root)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines == [
        f"{root / CRM}:22: destination.contract.bach_size: unknown field 'bach_size'",
        "    fix: did you mean 'batch_size'?",
        f"{root / 'syncs.yaml'}:9: syncs[1].schedule: cron expression '*/30 * * *' has 4 fields,"
        " expected 5",
        "    fix: write five fields: minute hour day-of-month month day-of-week,"
        " e.g. '*/30 * * * *'",
        "2 problems found",
    ]


def test_cli_show_prints_the_plan() -> None:
    result = runner.invoke(app, ["show", "high_value_to_crm", "--catalog", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in [
        "audience:    high_value_customers (v3",
        "destination: crm_webhook (webhook",
        "contract:    v2",
        "identifier:  email <- email (email)",
        "sync mode:   mirror",
        "consent:     email_marketing",
        "schedule:    0 * * * *",
    ]:
        assert expected in out
    assert any(
        line.split()[:2] == ["crm_contact_id", "crm_id"] and "destination" in line
        for line in out.splitlines()
    )


def test_cli_show_unknown_sync() -> None:
    result = runner.invoke(app, ["show", "high_value_to_cr", "--catalog", str(EXAMPLE)])
    assert result.exit_code == 1
    assert "did you mean 'high_value_to_crm'?" in result.output


# --- contracts against the destination's spec -----------------------------------------------

HUBSPOT = "destinations/hubspot_contacts.yaml"
META = "destinations/meta_high_value.yaml"


def test_a_batch_bigger_than_the_destination_takes_is_reported_at_its_line(root: Path) -> None:
    edit(root, HUBSPOT, "batch_size: 100", "batch_size: 500")
    problem = one(root)
    at(problem, root, HUBSPOT, 20, "destination.contract.batch_size")
    assert "limit of 100 records per request" in problem.message
    assert problem.fix == "use at most 100"


def test_an_identifier_the_destination_cannot_match_on_is_reported(root: Path) -> None:
    edit(root, META, "identifier: {name: email,", "identifier: {name: external_id,")
    problem = one(root)
    at(problem, root, META, 12, "destination.contract.identifier.name")
    assert problem.fix == "use one of: email, phone"


def test_write_if_empty_needs_a_destination_that_reads_first(root: Path) -> None:
    edit(
        root,
        "destinations/braze_users.yaml",
        "type: timestamp}",
        "type: timestamp, write: if_empty}",
    )
    problem = one(root)
    assert problem.location == "destination.contract.fields"
    assert "cannot be honoured (fields: last_order_at)" in problem.message


def test_a_max_length_above_what_the_destination_stores_is_reported(root: Path) -> None:
    edit(root, "destinations/braze_users.yaml", "max_length: 255", "max_length: 300")
    problem = one(root)
    at(
        problem,
        root,
        "destinations/braze_users.yaml",
        14,
        "destination.contract.fields[1].max_length",
    )
    assert "longest value of 255 characters" in problem.message
    assert problem.fix == "use at most 255"
