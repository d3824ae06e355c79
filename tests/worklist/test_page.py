"""The worklist page in a real browser: Playwright driving Debian's Chromium against `triage api`.

A radiologist signs in, sees the trauma queue in priority order, opens a study, sees its image
with the AI's box drawn on it, marks a box of their own and records the reading; the page picks
up a newly arrived study by itself. Screenshots land in test-artifacts/ (TRIAGE_TEST_ARTIFACTS).
"""

import contextlib
import os
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import select

from testkit.peers import REPO, free_port, require_tool, start_triage, stop, wait_until
from tests.worklist import seed
from triage.records.accounts import add_user
from triage.records.tables import Feedback, Role, StudyState

pytestmark = pytest.mark.integration
ARTIFACTS = Path(os.environ.get("TRIAGE_TEST_ARTIFACTS", REPO / "test-artifacts"))
PASSWORD = "correct horse battery staple"


def _answers(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def served(make_settings, tmp_path):
    with serving(make_settings(api_port=free_port()), tmp_path) as running:
        yield running


@contextlib.contextmanager
def serving(settings, tmp_path, **env):
    from triage.records.db import Database, migrate

    migrate(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    ids = seed.worklist_of_every_kind(database, settings)
    with database.session() as session:
        add_user(session, "dr.lund", PASSWORD, frozenset({Role.RADIOLOGIST}), actor="test")
    process = start_triage("api", settings, tmp_path / "api.log", **env)
    url = f"http://127.0.0.1:{settings.api_port}"
    try:
        wait_until(lambda: _answers(f"{url}/healthz") or process.poll() is not None, timeout=60)
        assert process.poll() is None, (tmp_path / "api.log").read_text()
        yield url, database, settings, ids
    finally:
        stop(process)
        database.dispose()


def signed_in_page(browser, url, name="dr.lund", rows=4):
    """A new page with ``name`` signed in; for dr.lund, once the default queue's ``rows`` studies show."""
    page = browser.new_page()
    page.goto(url)
    page.fill("#sign-in input[name=username]", name)
    page.fill("#sign-in input[name=password]", PASSWORD)
    page.click("#sign-in button[type=submit]")
    if name == "dr.lund":
        expect(page.locator("#worklist tbody tr")).to_have_count(rows)
    return page


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=require_tool("chromium"),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
            ],
        )
        yield chromium
        chromium.close()


def test_a_radiologist_reads_the_worklist_and_records_a_reading(served, browser):
    url, database, settings, ids = served
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(url)
    page.fill("#sign-in input[name=username]", "dr.lund")
    page.fill("#sign-in input[name=password]", "wrong password")
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#sign-in-error")).to_contain_text("wrong password")
    page.fill("#sign-in input[name=password]", PASSWORD)
    page.click("#sign-in button[type=submit]")

    rows = page.locator("#worklist tbody tr")
    expect(rows).to_have_count(4)
    expect(page.locator("#sign-in")).to_be_hidden()
    verdicts = [rows.nth(i).get_attribute("data-verdict") for i in range(4)]
    assert verdicts == ["FRACTURE", "DOUBT", "NO_FRACTURE", "NOT_ANALYSED"]
    expect(rows.nth(2)).to_contain_text("Eligible for discharge per local protocol")
    expect(rows.nth(3)).to_contain_text("FAILED")  # the delivery failure stands out
    expect(page.locator("#storage-degraded")).to_be_hidden()
    expect(page.locator("#degraded")).to_be_hidden()
    page.screenshot(path=str(ARTIFACTS / "worklist.png"), full_page=True)

    page.click("#queues button[data-queue=double_read]")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("HIGH RISK")
    page.click("#queues button[data-queue=trauma]")
    expect(rows).to_have_count(4)

    rows.first.click()
    figure = page.locator("#images figure").first
    expect(figure.locator("svg rect.fracture")).to_have_count(1)
    assert page.evaluate("document.querySelector('#images img').naturalWidth") == 256
    expect(page.locator("#history tbody tr")).to_have_count(6)
    expect(page.locator("#detail-verdict")).to_contain_text("triage-fracture-phantom 0.1.0")

    box = figure.locator("svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=5)
    page.mouse.up()
    expect(page.locator("#feedback-status")).to_contain_text("1 box(es) marked")
    page.check("#fracture-fields input[value=true]")
    page.click("#feedback button[type=submit]")
    expect(page.locator("#readings tbody tr")).to_have_count(1)
    expect(page.locator("#readings tbody tr").first).to_contain_text("local:dr.lund")
    expect(figure.locator("svg rect.reader")).to_have_count(1)  # the recorded box, beside the AI's
    expect(figure.locator("svg rect.fracture")).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "study.png"), full_page=True)

    with database.session() as session:
        reading = session.scalars(select(Feedback)).one()
        assert (reading.study_id, reading.kind, reading.value, reading.author) == (
            ids["fracture"],
            "FRACTURE",
            True,
            "local:dr.lund",
        )
        x0, y0, x1, y1 = reading.boxes[0]["corners"]
        # dragged from a quarter to a half of a 256-pixel image, in source pixels
        assert abs(x0 - 64) < 4 and abs(y0 - 64) < 4 and abs(x1 - 128) < 4 and abs(y1 - 128) < 4

    # A study arriving while the page is open shows up without a reload.
    seed.add_study(
        database,
        settings,
        seed.trauma(9, fractured=True),
        pipeline="fracture",
        state=StudyState.ANALYSING,
        at=seed.T0,
    )
    expect(rows).to_have_count(5, timeout=15_000)
    expect(page.locator("#worklist tbody tr[data-verdict=PENDING]")).to_have_count(1)


def test_an_admin_looks_up_who_accessed_a_patients_studies(served, browser):
    url, database, _, _ = served
    with database.session() as session:
        add_user(session, "it.admin", PASSWORD, frozenset({Role.ADMIN}), actor="test")
    page = browser.new_page()
    for name in ("dr.lund", "it.admin"):  # the radiologist opens the trauma queue, then the admin looks
        page.goto(url)
        page.fill("#sign-in input[name=username]", name)
        page.fill("#sign-in input[name=password]", PASSWORD)
        page.click("#sign-in button[type=submit]")
        if name == "dr.lund":
            expect(page.locator("#worklist tbody tr")).to_have_count(4)
            page.click("#sign-out")
    expect(page.locator("#empty")).to_contain_text("needs the radiologist role")
    page.fill("#audit-form input[name=patient_id]", "SYN0003")
    page.click("#audit-form button[type=submit]")
    viewed = page.locator("#audit-log tbody tr", has_text="worklist.viewed")
    expect(viewed).to_have_count(1)
    expect(viewed).to_contain_text("local:dr.lund")
    expect(viewed).to_contain_text("ACC0003")


def test_an_admin_sees_the_live_evidence_drift_and_performance_and_two_admins_enable_a_decision(
    served, browser
):
    from triage.outcomes import Decision
    from triage.pipelines import Pipeline
    from triage.records import drift, overrides, readings, switches
    from triage.records.db import utcnow
    from triage.records.tables import FeedbackKind

    url, database, _, ids = served
    with database.session() as session:
        add_user(session, "it.admin", PASSWORD, frozenset({Role.ADMIN}), actor="test")
        switches.change(
            session, Pipeline.FRACTURE, Decision.RULE_OUT, True, "checked by hand", "admin", utcnow()
        )
        drift.record_reference(
            session,
            Pipeline.FRACTURE,
            "triage-fracture-phantom",
            "0.1.0",
            [0.1 * k for k in range(1, 10)],
            utcnow(),
        )
        readings.add_feedback(
            session, study_id=ids["fracture"], kind=FeedbackKind.FRACTURE, value=True, boxes=[], comment="",
            author="dr.lund", now=utcnow(),
        )  # fmt: skip
    page = signed_in_page(browser, url, "it.admin")
    expect(page.locator("#operations")).to_be_visible()
    rule_out = page.locator("#decisions-table tbody tr[data-decision=rule_out]")
    expect(rule_out).to_contain_text("OFF: checked by hand")
    expect(rule_out).to_contain_text("1/1")
    expect(rule_out.locator("svg.plot rect")).to_have_count(2)
    scanner = page.locator("#drift-table tbody tr", has_text="triage test suite (synthetic)")
    expect(scanner).to_contain_text("too few studies")
    expect(scanner.locator("svg.plot rect.bar")).to_have_count(10)
    month = page.locator("#screening-table tbody tr[data-month='2026-11']")
    expect(month).to_contain_text("50.0 % (")  # one of the two synthetic screens scored at or below 5
    expect(month.locator("svg.plot rect.interval")).to_have_count(1)
    expect(page.locator("#performance-summary")).to_contain_text("NOT ANALYSED: fracture")
    expect(page.locator("#performance-summary")).to_contain_text("Completion to SR acknowledged: fracture")

    # Enabling the rule-out against the card takes two admins, after its what-if.
    page.select_option("#change-form select[name=kind]", "fracture/rule_out")
    page.fill("#change-form input[name=model]", "triage-fracture-phantom:0.1.0")
    page.fill("#change-form input[name=reason]", "local evidence on 400 fractures")
    page.click("#change-form button[type=submit]")
    proposed = page.locator("#changes-table tbody tr[data-change='1']")
    expect(proposed).to_contain_text("share cleared: ")
    expect(proposed).to_contain_text("awaiting a second admin")
    expect(proposed.locator("button")).to_have_count(0)  # not for the one who proposed it
    page.screenshot(path=str(ARTIFACTS / "operations.png"), full_page=True)
    page.click("#sign-out")
    expect(page.locator("#operations")).to_be_hidden()
    with database.session() as session:
        add_user(session, "ops.admin", PASSWORD, frozenset({Role.ADMIN}), actor="test")
    second = signed_in_page(browser, url, "ops.admin")
    second.click("#changes-table tbody tr[data-change='1'] button")
    expect(second.locator("#changes-table tbody tr[data-change='1']")).to_contain_text(
        "approved by local:ops.admin"
    )
    with database.reading() as session:
        [why] = overrides.in_force(session, "triage-fracture-phantom", "0.1.0").values()
    assert "proposed by local:it.admin, approved by local:ops.admin" in why


def test_the_page_says_when_storage_is_degraded(make_settings, tmp_path, browser):
    from triage.records import results
    from triage.records.db import utcnow

    settings = make_settings(api_port=free_port())
    settings.storage_dir.mkdir(parents=True)
    # A watermark above any disk's free space: the listener would refuse images now.
    with serving(settings, tmp_path, TRIAGE_STORAGE_MIN_FREE_BYTES=str(1 << 62)) as (url, database, *_):
        with database.session() as session:  # as triage serve records a worker that keeps stopping
            why = "the worker stopped (exit 1), 5 time(s) in 10 min; starting it again in 16 s"
            results.record_peer_status(session, "process:worker", False, why, utcnow())
        page = signed_in_page(browser, url)
        expect(page.locator("#storage-degraded")).to_be_visible()
        expect(page.locator("#storage-degraded")).to_contain_text("refusing new images")
        expect(page.locator("#degraded")).to_contain_text("the worker stopped (exit 1), 5 time(s)")


def test_the_page_says_when_the_live_evidence_switched_the_rule_out_off(served, browser):
    from triage.outcomes import Decision
    from triage.pipelines import Pipeline
    from triage.records import switches
    from triage.records.db import utcnow

    url, database, *_ = served
    page = signed_in_page(browser, url)
    expect(page.locator("#switched-off")).to_be_hidden()
    why = "2 fractures on studies cleared as NO FRACTURE within 30 days (the site switches off at 2)"
    with database.session() as session:
        switches.change(
            session, Pipeline.FRACTURE, Decision.RULE_OUT, True, why, switches.LIVE_EVIDENCE, utcnow()
        )
    page.click("#queues button[data-queue=trauma]")
    expect(page.locator("#switched-off")).to_be_visible()
    expect(page.locator("#switched-off")).to_contain_text(
        "rule-out (eligible for discharge) is switched off for fracture studies: 2 fractures"
    )


def test_the_recall_queue_heads_the_page_until_the_contact_is_recorded(served, browser):
    from triage.records import readings
    from triage.records.tables import FeedbackKind, StudyState

    url, database, settings, _ = served
    cleared = seed.add_study(
        database, settings, seed.trauma(40, True), pipeline="fracture", state=StudyState.REPORTED,
        outcome=seed.fracture_outcome("NO_FRACTURE", 0.1, {}),
    )  # fmt: skip
    with database.session() as session:
        readings.add_feedback(
            session, study_id=cleared, kind=FeedbackKind.FRACTURE, value=True, boxes=[], comment="",
            author="hl7:EDIS", now=seed.T0,
        )  # fmt: skip
    page = signed_in_page(browser, url, "dr.lund", rows=5)  # the seeded four and the cleared one
    expect(page.locator("#recall")).to_be_visible()
    expect(page.locator("#recall-count")).to_have_text("1")
    row = page.locator("#recall-table tbody tr")
    expect(row).to_contain_text("fracture on a study cleared as NO FRACTURE")
    expect(row).to_contain_text("SYN0040")
    expect(row).to_contain_text("hl7:EDIS")
    row.locator("input[name=note]").fill("Phoned; booked to fracture clinic")
    row.locator("button").click()
    expect(page.locator("#recall-status")).to_contain_text(
        "Recorded: fracture on a study cleared as NO FRACTURE"
    )
    expect(page.locator("#recall")).to_be_hidden()


def test_a_radiologist_signs_in_on_the_page_with_the_identity_provider(make_settings, tmp_path, browser):
    """The authorization code flow with PKCE, in the browser: the page's link, the provider (run in
    this process over https from a private CA), back to the page signed in as the token's subject."""
    from tests.dicom_node.conftest import make_pki
    from tests.worklist.test_oidc_login import CLIENT, Provider

    pki = make_pki(tmp_path / "pki")
    provider = Provider(pki)
    port = free_port()
    oidc = {
        "TRIAGE_OIDC_ISSUER": provider.issuer, "TRIAGE_OIDC_AUDIENCE": "triage-api",
        "TRIAGE_OIDC_CLIENT_ID": CLIENT, "TRIAGE_OIDC_CA_BUNDLE": str(pki / "ca.crt"),
        "TRIAGE_OIDC_REDIRECT_URL": f"http://127.0.0.1:{port}/api/oidc/callback",
        "TRIAGE_OIDC_ROLES_CLAIM": "realm_access.roles",
    }  # fmt: skip
    try:
        with serving(make_settings(api_port=port), tmp_path, **oidc) as (url, _, _, _):
            context = browser.new_context(ignore_https_errors=True)  # the provider's private CA
            page = context.new_page()
            page.goto(url)
            page.click("#sign-in-provider a")
            expect(page.locator("#who")).to_contain_text("oidc:u-77 (dr.lund) (radiologist)")
            expect(page.locator("#worklist")).to_be_visible()
            assert "token=" not in page.url  # the fragment is taken off the address bar
            assert "code_verifier" in provider.token_requests[-1]
            token = page.evaluate("sessionStorage.getItem('triage-token')")
            context.close()
            # Login CSRF: a link carrying someone's valid token signs no tab in that did not start it.
            planted = browser.new_context().new_page()
            planted.goto(f"{url}/#" + urllib.parse.urlencode({"token": token, "tab": "f" * 48}))
            expect(planted.locator("#sign-in-error")).to_contain_text("not started on this page")
            expect(planted.locator("#main")).to_be_hidden()
            assert planted.evaluate("sessionStorage.getItem('triage-token')") is None
    finally:
        provider.server.shutdown()


def test_the_page_says_which_decisions_the_models_evidence_does_not_support(served, browser):
    """NO FRACTURE from a model without rule-out evidence reads NORMAL READING, advisory, with why;
    its boxes are hidden and the page says localisation is not validated; a screen whose score would
    single-read it goes to double reading and says so."""
    from triage import evidence
    from triage.evidence import Gate
    from triage.outcomes import BreastOutcome, Decision, Route

    url, database, settings, _ = served
    intact = seed.trauma(11, fractured=False)
    uid = str(intact[0].SOPInstanceUID)
    off = Gate(not_enabled={
        Decision.RULE_OUT: "the model's card carries no rule-out evidence",
        Decision.BOXES: "mAP@50 0.01 (95 % CI 0.00-0.04) is below the site's bar (0.3)",
    })  # fmt: skip
    outcome = evidence.apply(
        seed.fracture_outcome("NO_FRACTURE", 0.05, {uid: [([60.0, 60.0, 90.0, 90.0], 0.1)]}), off
    )
    seed.add_study(
        database, settings, intact, pipeline="fracture", state=StudyState.REPORTED, outcome=outcome,
        deliveries=(seed.DeliveryState.DELIVERED,), at=seed.T0 + seed.timedelta(hours=1),
    )  # fmt: skip
    screen = evidence.apply(
        BreastOutcome(score=2, route=Route.SINGLE_READ, probability=0.05, single_read_max_score=5),
        Gate(not_enabled={Decision.SINGLE_READ: "the model's card carries no single-reading evidence"}),
    )
    seed.add_study(
        database, settings, seed.screen(12), pipeline="breast", state=StudyState.REPORTED, outcome=screen,
        deliveries=(seed.DeliveryState.DELIVERED,), at=seed.T0 + seed.timedelta(hours=1),
    )  # fmt: skip
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(url)
    page.fill("#sign-in input[name=username]", "dr.lund")
    page.fill("#sign-in input[name=password]", PASSWORD)
    page.click("#sign-in button[type=submit]")
    normal = page.locator("#worklist tbody tr[data-verdict=NORMAL_READING]")
    expect(normal).to_have_count(1)
    expect(normal).to_contain_text("NORMAL READING")
    expect(normal).to_contain_text("Rule-out not enabled for this model: read as usual")
    expect(normal).not_to_contain_text("Eligible for discharge")
    normal.click()
    detail = page.locator("#detail-verdict")
    expect(detail).to_contain_text("AI score 0.05 (not a probability)")
    expect(detail).not_to_contain_text("probability 0.05")
    expect(detail).to_contain_text("rule-out (eligible for discharge) not enabled: the model's card carries")
    expect(detail).to_contain_text("advisory AI score 0.05")
    expect(detail).to_contain_text("Localisation is not validated for this model, boxes hidden: mAP@50 0.01")
    expect(page.locator("#images figure").first).to_be_visible()
    expect(page.locator("#images svg rect.doubt, #images svg rect.fracture")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "study-rule-out-not-enabled.png"), full_page=True)
    page.click("#queues button[data-queue=screening]")
    double = page.locator("#worklist tbody tr", has_text="Single reading not enabled")
    expect(double).to_have_count(1)
    assert double.get_attribute("data-verdict") == "DOUBLE_READ"


def test_a_pacs_button_opens_the_study_and_the_study_opens_in_the_pacs_viewer(
    make_settings, tmp_path, browser
):
    """A PACS's "triage result" button sends the user to /IHEInvokeImageDisplay: after sign-in the
    page opens that study. Its "Open in PACS viewer" opens the site's viewer on the study (audited)."""
    from triage.records.tables import AuditEvent, Study

    port = free_port()
    template = f"http://127.0.0.1:{port}/healthz?viewer-study={{study_instance_uid}}"  # a page that answers
    settings = make_settings(api_port=port, pacs_viewer_url=template)
    with serving(settings, tmp_path, TRIAGE_PACS_VIEWER_URL=template) as (url, database, _, ids):
        with database.reading() as session:
            uid = session.get(Study, ids["doubt"]).study_instance_uid
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(f"{url}/IHEInvokeImageDisplay?requestType=STUDY&studyUID={uid}")
        page.fill("#sign-in input[name=username]", "dr.lund")
        page.fill("#sign-in input[name=password]", PASSWORD)
        page.click("#sign-in button[type=submit]")
        expect(page.locator("#detail")).to_be_visible()
        expect(page.locator("#detail-title")).to_contain_text("SYN0002")
        expect(page.locator("#worklist tbody tr .open-viewer")).to_have_count(4)
        with page.expect_popup() as opened:
            page.click("#open-viewer")
        assert opened.value.url == template.format(study_instance_uid=uid)
        page.screenshot(path=str(ARTIFACTS / "study-opened-from-the-pacs.png"), full_page=True)
        with database.reading() as session:
            launched = session.scalars(
                select(AuditEvent.study_id).where(AuditEvent.action == "viewer.launched")
            )
            assert list(launched) == [ids["doubt"]]


def test_a_radiologist_reads_at_full_depth_windows_zooms_steps_and_sees_a_screen_hung(served, browser):
    """The reading viewer: opened from an image, fitted to the window, windowed by dragging on the
    full-depth values, zoomed by the wheel, stepped by the keyboard, boxes toggled; a screen hung as
    right and left of one view facing each other, CC then MLO."""
    url, _, _, _ = served
    page = signed_in_page(browser, url)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.click("#queues button[data-queue=trauma]")
    page.locator("#worklist tbody tr").first.click()
    page.locator("#images figure button.read").first.click()
    reader = page.locator("#reader")
    expect(reader).to_be_visible()
    expect(reader).to_have_attribute("data-boxes", "on")
    expect(page.locator("#reader-status")).to_contain_text("Image 1 of")
    canvas = page.locator("#reader-canvas").bounding_box()
    assert canvas["width"] >= 1300 and canvas["height"] >= 800, "fitted to the window, not a thumbnail"
    lit = page.evaluate(
        "(() => { const c = document.querySelector('#reader-canvas'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let k = 0; k < d.length; k += 4)"
        " if (d[k] > 0) n++; return n / (d.length / 4); })()"
    )
    assert lit > 0.2, "the image fills the view"
    width = float(reader.get_attribute("data-width"))
    middle = (canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2)
    page.mouse.move(*middle)
    page.mouse.down()
    page.mouse.move(middle[0] + 200, middle[1] - 100, steps=5)
    page.mouse.up()
    assert float(reader.get_attribute("data-width")) > width, "dragging right widens the window"
    page.mouse.wheel(0, -400)
    assert float(reader.get_attribute("data-zoom")) > 1.5
    page.keyboard.press("b")
    expect(reader).to_have_attribute("data-boxes", "off")
    page.screenshot(path=str(ARTIFACTS / "reader-trauma.png"))
    page.keyboard.press("Escape")
    expect(reader).to_be_hidden()

    page.click("#queues button[data-queue=single_read]")
    expect(page.locator("#worklist tbody tr")).to_have_count(1)
    page.locator("#worklist tbody tr").first.click()
    expect(page.locator("#images figure")).to_have_count(4)
    page.locator("#images figure button.read").first.click()
    expect(reader).to_have_attribute("data-layout", "R-CC|L-CC")
    # The synthetic right views run towards P (chest wall on the right), the left ones towards A: each
    # already faces the other, so neither is flipped; the other cases, from the header and from where
    # the tissue is when the header says nothing:
    expect(reader).to_have_attribute("data-flipped", "0,0")
    sides = page.evaluate(
        "[['P', false, [1, 9]], ['A', false, [9, 1]], ['', false, [1, 9]], ['', false, [9, 1]],"
        " ['', true, [1, 9]]].map(([d, inv, v]) => chestWallOnRight({rowDirection: d, invert: inv,"
        " rows: 1, columns: 2, values: new Uint16Array(v)}))"
    )
    assert sides == [True, False, True, False, False]
    page.screenshot(path=str(ARTIFACTS / "reader-screen-cc.png"))
    page.keyboard.press("ArrowRight")
    expect(reader).to_have_attribute("data-layout", "R-MLO|L-MLO")
    expect(reader).to_have_attribute("data-index", "1")
    page.keyboard.press("ArrowLeft")
    expect(reader).to_have_attribute("data-index", "0")
