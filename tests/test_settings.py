import json

import pytest
from pydantic import ValidationError

from triage.settings import load_settings
from triage.values import DicomPeer


def test_defaults_match_the_documentation(monkeypatch):
    for name in (
        "TRIAGE_HOME",
        "TRIAGE_AE_TITLE",
        "TRIAGE_DICOM_PORT",
        "TRIAGE_API_PORT",
        "TRIAGE_BROKER_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (str(settings.home), settings.ae_title, settings.dicom_port, settings.api_port) == (
        "var",
        "TRIAGE",
        11112,
        8000,
    )
    assert settings.broker_url is None and settings.allowed_calling_aes == ()
    assert settings.resolved_database_url.endswith("/var/triage.db")


def test_environment_is_parsed(monkeypatch):
    monkeypatch.setenv("TRIAGE_ALLOWED_CALLING_AES", "PACS1, ORTHANC")
    monkeypatch.setenv("TRIAGE_PACS", "PACS1@10.1.2.3:104")
    settings = load_settings()
    assert settings.allowed_calling_aes == ("PACS1", "ORTHANC")
    assert settings.pacs == DicomPeer(ae_title="PACS1", host="10.1.2.3", port=104)
    assert not settings.accepts_any_calling_ae


def test_star_opens_the_allow_list(monkeypatch):
    monkeypatch.setenv("TRIAGE_ALLOWED_CALLING_AES", "*")
    assert load_settings().accepts_any_calling_ae


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TRIAGE_PACS", "PACS:104", "write it as AE@host:port"),
        ("TRIAGE_DICOM_PORT", "70000", "less than or equal to 65535"),
        ("TRIAGE_ALLOWED_CALLING_AES", "A\\B", "not a valid AE title"),
        (
            "TRIAGE_TLS_CERTIFICATE",
            "/etc/cert.pem",
            "needs both TRIAGE_TLS_CERTIFICATE and TRIAGE_TLS_PRIVATE_KEY",
        ),
        ("TRIAGE_ROUTING_FILE", "/nowhere.yaml", "set TRIAGE_ROUTING_FILE"),
    ],
)
def test_invalid_settings_fail_with_a_reason(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        load_settings()


def test_unknown_key_in_the_yaml_file_is_refused(tmp_path):
    config = tmp_path / "service.yaml"
    config.write_text("ae_titel: TYPO\n")
    with pytest.raises(ValidationError, match="ae_titel"):
        load_settings(config)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        load_settings(tmp_path / "missing.yaml")


def test_the_example_file_documents_every_setting_and_loads():
    import yaml

    from testkit.peers import REPO
    from triage.settings import Settings

    example = REPO / "configs" / "service.example.yaml"
    assert set(yaml.safe_load(example.read_text())) == set(Settings.model_fields)
    assert load_settings(example, routing_file=REPO / "configs" / "routing.yaml").allowed_calling_aes == (
        "PACS",
        "ORTHANC",
    )


def test_mlflow_store_defaults_under_home_and_follows_mlflow_tracking_uri(make_settings, monkeypatch):
    home_store = make_settings().resolved_mlflow_tracking_uri
    assert home_store.startswith("sqlite:///") and home_store.endswith("/home/mlflow/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example.org:5000")
    assert make_settings().resolved_mlflow_tracking_uri == "http://mlflow.example.org:5000"


def test_settings_shown_to_operators_mask_every_credential(tmp_path):
    settings = load_settings(
        home=tmp_path,
        database_url="postgresql://triage:db-pass@db/triage",
        broker_url="amqp://guest:broker-pass@mq//",
        mlflow_tracking_uri="https://ml-user:ml-pass@mlflow.example/?token=ml-token&view=1",
        oidc_jwks_url="https://idp.example/jwks?api_key=jwks-key",
        oidc_issuer="https://idp.example",
        oidc_audience="triage",
    )
    shown = json.dumps(settings.shown())
    for secret in ("db-pass", "broker-pass", "ml-user", "ml-pass", "ml-token", "jwks-key"):
        assert secret not in shown
    values = settings.shown()
    assert values["mlflow_tracking_uri"] == "https://**********@mlflow.example/?token=**********&view=1"
    assert values["oidc_issuer"] == "https://idp.example" and values["oidc_audience"] == "triage"
    assert values["ae_title"] == "TRIAGE"


def test_the_pacs_viewer_url_takes_the_study_uid_and_identifiers_only_when_allowed():
    from pydantic import ValidationError

    from triage.settings import load_settings

    assert load_settings(pacs_viewer_url="https://v/?uid={study_instance_uid}").pacs_viewer_url
    with pytest.raises(ValidationError, match="need pacs_viewer_identifiers"):
        load_settings(pacs_viewer_url="https://v/?uid={study_instance_uid}&acc={accession_number}")
    allowed = load_settings(
        pacs_viewer_url="https://v/?uid={study_instance_uid}&acc={accession_number}",
        pacs_viewer_identifiers=True,
    )
    assert allowed.pacs_viewer_identifiers
    with pytest.raises(ValidationError, match="takes \\{study_instance_uid\\}"):
        load_settings(pacs_viewer_url="https://v/?acc={patient_name}")
