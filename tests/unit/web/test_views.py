"""The door: auth, validation, dedup, atomic store + enqueue, health. Real Redis, Flask test client."""

from __future__ import annotations

import json

import pytest
import redis
import rq
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from relay import create_app
from relay.config import ConfigError
from relay.dev import RedisServer, free_port
from relay.store.state import deliveries_key, event_key, task_key
from relay.suno import event_id
from tests.conftest import TOKEN
from tests.support import Reply, nothing_recorded

PATH = "/callbacks/suno/lyrics"
SLACK = "http://127.0.0.1:9/services/T000/B000/SLACKSECRETxyz"
DISCORD = "http://127.0.0.1:9/api/webhooks/1/DISCORDSECRETxyz"


@pytest.fixture
def settings(make_settings, redis_conn):
    return make_settings(SLACK_WEBHOOK_URL=SLACK, DISCORD_WEBHOOK_URL=f"{DISCORD}#only=failed")


@pytest.fixture
def client(settings):
    return create_app(settings).test_client()


def post(client, body, token: str | None = TOKEN, **kwargs):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    query = {"token": token} if token is not None else {}
    return client.post(PATH, data=data, query_string=query, content_type="application/json", **kwargs)


def queued_jobs(settings, redis_conn) -> list[rq.job.Job]:
    queue = rq.Queue(settings.queue_name, connection=redis_conn)
    return [queue.fetch_job(job_id) for job_id in queue.job_ids]


def test_first_callback_is_received_stored_and_queued(client, settings, redis_conn, sample) -> None:
    response = post(client, sample)
    task_id = sample["data"]["task_id"]
    evt = event_id(task_id, "complete")
    assert response.status_code == 200
    assert response.get_json() == {"status": "received", "task_id": task_id, "event_id": evt}
    stored = json.loads(redis_conn.get(event_key(evt)))
    assert stored["task_id"] == task_id and stored["lyrics"][0]["title"] == "Starry Night Dreams"
    assert redis_conn.smembers(task_key(task_id)) == {evt.encode()}
    assert 6 * 86400 < redis_conn.ttl(event_key(evt)) <= 7 * 86400
    # One job for the event, naming the interested targets: Discord only wants failures.
    jobs = queued_jobs(settings, redis_conn)
    assert [(job.args, job.func_name) for job in jobs] == [((evt, ["slack"]), "relay.jobs.dispatch")]
    assert set(redis_conn.hgetall(deliveries_key(evt))) == {b"slack"}


def test_repeat_is_a_duplicate_and_queues_nothing(client, settings, redis_conn, sample) -> None:
    assert post(client, sample).get_json()["status"] == "received"
    for _ in range(3):
        response = post(client, sample)
        assert response.status_code == 200 and response.get_json()["status"] == "duplicate"
    assert len(queued_jobs(settings, redis_conn)) == 1


def test_dedup_is_per_task_and_callback_type(client, settings, redis_conn, sample) -> None:
    post(client, sample)
    error = {"code": 500, "msg": "boom", "data": {"callbackType": "error", "task_id": sample["data"]["task_id"]}}
    assert post(client, error).get_json()["status"] == "received"
    other = json.loads(json.dumps(sample))
    other["data"]["task_id"] = "another"
    assert post(client, other).get_json()["status"] == "received"
    jobs = queued_jobs(settings, redis_conn)
    assert [job.args[1] for job in jobs] == [["slack"], ["slack", "discord"], ["slack"]]


def test_dedup_ttl_is_configurable(make_settings, redis_conn, sample) -> None:
    client = create_app(make_settings(RELAY_DEDUP_TTL="2h")).test_client()
    post(client, sample)
    assert 7000 < redis_conn.ttl(event_key(event_id(sample["data"]["task_id"], "complete"))) <= 7200


@pytest.mark.parametrize("token", [None, "", "wrong-token-0123456789", TOKEN + "x", TOKEN[:-1]])
def test_missing_or_wrong_token_is_401_and_records_nothing(client, redis_conn, sample, token) -> None:
    response = post(client, sample, token=token)
    assert response.status_code == 401
    assert "token" in response.get_json()["error"]
    # Nothing of the callback: only the count of rejected requests, for the operator's page.
    assert [key.decode().split(":")[1] for key in redis_conn.scan_iter()] == ["stats"]


def test_token_in_header_is_accepted(client, sample) -> None:
    response = client.post(PATH, json=sample, headers={"X-Relay-Token": TOKEN})
    assert response.status_code == 200


def test_unauthenticated_mode_needs_explicit_opt_in(make_settings, redis_conn, sample) -> None:
    with pytest.raises(ConfigError, match="RELAY_CALLBACK_TOKEN is not set"):
        create_app(make_settings(RELAY_CALLBACK_TOKEN=""))
    client = create_app(make_settings(RELAY_CALLBACK_TOKEN="", RELAY_ALLOW_UNAUTHENTICATED="1")).test_client()
    assert post(client, sample, token=None).status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "body is empty"),
        (b"not json", "body is not valid JSON"),
        (b"[1]", "body must be a JSON object"),
        (b'{"code": 200, "data": {"callbackType": "complete"}}', "data.task_id (or data.taskId) is missing"),
        (b'{"data": {"task_id": "t", "data": "x"}}', "data.data must be an array"),
        (b"\xff\xfe\x00", "body is not UTF-8"),
        (b"[" * 50000, "body is not valid JSON"),
    ],
)
def test_bad_bodies_get_400_with_the_reason(client, redis_conn, body, fragment) -> None:
    response = post(client, body)
    assert response.status_code == 400
    assert fragment in response.get_json()["error"]
    assert nothing_recorded(redis_conn)


def test_wrong_content_type_with_json_body_is_accepted(client, sample) -> None:
    response = client.post(PATH, data=json.dumps(sample), query_string={"token": TOKEN}, content_type="text/plain")
    assert response.status_code == 200


def test_body_over_limit_is_413(make_settings, redis_conn, sample) -> None:
    client = create_app(make_settings(RELAY_MAX_BODY_BYTES="2048")).test_client()
    sample["data"]["data"][0]["text"] = "la " * 1000
    response = post(client, sample)
    assert response.status_code == 413
    assert "RELAY_MAX_BODY_BYTES" in response.get_json()["error"]
    assert nothing_recorded(redis_conn)


def test_other_routes_and_methods_answer_json(client) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404 and "error" in missing.get_json()
    wrong_method = client.get(PATH)
    assert wrong_method.status_code == 405 and "error" in wrong_method.get_json()


def test_redis_down_is_503_with_retry_after(make_settings, sample) -> None:
    app = create_app(make_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    response = post(app.test_client(), sample)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "error" in response.get_json()
    assert app.test_client().get("/readyz").status_code == 503
    assert app.test_client().get("/healthz").status_code == 200


def test_readyz_ok_when_redis_answers_and_warns_without_worker(client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["redis"] == "ok" and body["workers"] == 0
    assert "no worker is running" in body["warning"]


def test_behind_one_proxy_hop(make_settings, redis_conn, sample, capsys) -> None:
    client = create_app(make_settings(RELAY_TRUSTED_PROXIES="1")).test_client()
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9", "X-Forwarded-Proto": "https"}
    assert post(client, sample, headers=headers).status_code == 200
    [received] = [json.loads(line) for line in capsys.readouterr().err.splitlines() if '"received"' in line]
    assert received["client"] == "203.0.113.9"  # the router's hop, not what the client claimed


def test_with_no_trusted_proxy_a_spoofed_forwarded_for_is_not_the_client(make_settings, redis_conn, sample, capsys):
    client = create_app(make_settings()).test_client()  # RELAY_TRUSTED_PROXIES defaults to 0
    headers = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
    assert post(client, sample, headers=headers).status_code == 200
    [received] = [json.loads(line) for line in capsys.readouterr().err.splitlines() if '"received"' in line]
    assert received["client"] == "127.0.0.1"  # the connection's address, not what the header claims


def test_failed_transaction_leaves_nothing_and_a_retry_succeeds(make_settings, sample) -> None:
    """A Redis error inside the transaction (here: out of memory) stores no dedup record without
    its work: the callback gets 503, nothing is written, and Suno's retry is received."""
    server = RedisServer().start()
    try:
        connection = redis.Redis.from_url(server.url)
        app = create_app(make_settings(REDIS_URL=server.url, SLACK_WEBHOOK_URL=SLACK))
        connection.config_set("maxmemory", 1)  # with noeviction, every write now fails with OOM
        response = post(app.test_client(), sample)
        assert response.status_code == 503
        evt = event_id(sample["data"]["task_id"], "complete")
        assert not connection.exists(event_key(evt))
        assert connection.llen("rq:queue:relay") == 0
        connection.config_set("maxmemory", 0)
        assert post(app.test_client(), sample).get_json()["status"] == "received"
        assert connection.exists(event_key(evt)) and connection.llen("rq:queue:relay") == 1
    finally:
        server.stop()


def test_no_secret_reaches_redis(client, redis_conn, sample) -> None:
    post(client, sample)
    post(client, {"code": 500, "msg": "boom", "data": {"callbackType": "error", "task_id": "t2"}})
    dump = b""
    for key in redis_conn.scan_iter():
        dump += key + repr(redis_conn.dump(key)).encode()
    assert dump  # something was written
    for secret in (TOKEN, "SLACKSECRETxyz", "DISCORDSECRETxyz", "127.0.0.1:9"):
        assert secret.encode() not in dump


def metric(text: str, line_prefix: str) -> float:
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_prefix)]
    return sum(values)


def test_metrics_are_off_by_default_then_need_their_token(client, make_settings) -> None:
    assert client.get("/metrics").status_code == 404
    guarded = create_app(make_settings(RELAY_METRICS_TOKEN="metrics-secret")).test_client()
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    response = guarded.get("/metrics", headers={"Authorization": "Bearer metrics-secret"})
    assert response.status_code == 200 and response.mimetype == "text/plain"


def test_metrics_content(make_settings, redis_conn, receivers, sample) -> None:
    from rq import SimpleWorker

    from relay import jobs

    slack, gone = receivers(), receivers(default=Reply(400, "invalid_payload"))
    settings = make_settings(
        RELAY_METRICS_TOKEN="metrics-secret", SLACK_WEBHOOK_URL=f"{slack.url}#rate=100/1s", DISCORD_WEBHOOK_URL=gone.url
    )
    client = create_app(settings).test_client()
    scrape = lambda: client.get("/metrics", headers={"Authorization": "Bearer metrics-secret"}).text  # noqa: E731
    before = scrape()
    post(client, sample)
    post(client, sample)
    post(client, sample, token="wrong-token-0123456789")
    post(client, b"[]")
    queued = scrape()
    assert (
        metric(queued, 'relay_callbacks_total{outcome="received"}')
        - metric(before, 'relay_callbacks_total{outcome="received"}')
        == 1
    )
    assert (
        metric(queued, 'relay_callbacks_total{outcome="duplicate"}')
        - metric(before, 'relay_callbacks_total{outcome="duplicate"}')
        == 1
    )
    assert metric(queued, 'relay_callbacks_total{outcome="unauthorized"}') >= 1
    assert metric(queued, 'relay_callbacks_total{outcome="invalid"}') >= 1
    assert metric(queued, "relay_ingest_seconds_count") - metric(before, "relay_ingest_seconds_count") == 2
    assert metric(queued, 'relay_queue_jobs{state="queued"}') == 1  # one job for the event's two targets
    assert metric(queued, "relay_workers") == 0

    runtime = jobs.configure(settings, redis_conn)
    SimpleWorker([runtime.queue], connection=redis_conn).work(burst=True)
    done = scrape()
    assert metric(done, 'relay_deliveries_total{outcome="delivered",target="slack"}') == 1
    assert metric(done, 'relay_deliveries_total{outcome="dead",target="discord"}') == 1
    assert metric(done, 'relay_delivery_seconds_count{target="slack"}') == 1
    assert metric(done, 'relay_delivery_seconds_bucket{le="+Inf",target="slack"}') == 1
    assert metric(done, "relay_dead_letters") == 1 and metric(done, 'relay_queue_jobs{state="queued"}') == 0


def test_dashboard_is_off_unless_configured(client) -> None:
    assert client.get("/rq/").status_code == 404


def test_dashboard_behind_basic_auth(make_settings, redis_conn, sample) -> None:
    import base64

    settings = make_settings(RELAY_DASHBOARD_USER="ops", RELAY_DASHBOARD_PASSWORD="dash-secret")
    client = create_app(settings).test_client()
    post(client, sample)
    assert client.get("/rq/").status_code == 401
    assert client.get("/rq/").headers["WWW-Authenticate"].startswith("Basic")
    wrong = base64.b64encode(b"ops:nope").decode()
    assert client.get("/rq/0/data/queues.json", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    right = {"Authorization": "Basic " + base64.b64encode(b"ops:dash-secret").decode()}
    page = client.get("/rq/", headers=right)
    assert page.status_code == 200
    from relay.store.connection import redis_location

    assert redis_location(settings.redis_url) in page.text  # the instance's name: where, never a password
    queues = client.get("/rq/0/data/queues.json", headers=right).get_json()["queues"]
    assert [(queue["name"], queue["count"]) for queue in queues] == [("relay", 1)]
    assert client.post(PATH, json=sample, query_string={"token": TOKEN}).status_code == 200  # the rest is untouched


def test_a_write_failing_after_the_dedup_record_does_not_block_the_retry(client, redis_conn, sample) -> None:
    """Redis has no rollback: if a write fails after the dedup record was set (here a key of the
    wrong type), the record is dropped again, the callback gets 503 and Suno's retry is received."""
    task_id = sample["data"]["task_id"]
    redis_conn.set(task_key(task_id), "not a set")
    response = post(client, sample)
    assert response.status_code == 503
    assert not redis_conn.exists(event_key(event_id(task_id, "complete")))
    redis_conn.delete(task_key(task_id))
    assert post(client, sample).get_json()["status"] == "received"


# Issue 10: hostile inputs. --------------------------------------------------------------------


@pytest.mark.parametrize("code", ["--5", "²", "9" * 5000, "1e3", 200.5, [200], {"a": 1}])
def test_a_code_that_is_not_an_integer_is_400(client, code) -> None:
    response = post(client, {"code": code, "data": {"task_id": "t", "callbackType": "complete"}})
    assert response.status_code == 400 and "code must be an integer" in response.get_json()["error"]


@pytest.mark.parametrize("field", ["title", "text", "error_message"])
def test_lone_surrogates_in_free_text_become_replacement_characters(client, redis_conn, field) -> None:
    item = {"status": "complete", "title": "T", "text": "la", "error_message": ""}
    item[field] = "before \ud83c after\x00"
    body = {"code": 200, "msg": "ok \udfff", "data": {"callbackType": "complete", "task_id": "sur", "data": [item]}}
    response = post(client, json.dumps(body))  # json.dumps writes the lone surrogate as "\ud83c"
    assert response.status_code == 200 and response.get_json()["status"] == "received"
    stored = json.loads(redis_conn.get(event_key(event_id("sur", "complete"))))
    assert stored["message"] == "ok \ufffd"
    value = stored["lyrics"][0]["error" if field == "error_message" else field]
    assert value == "before \ufffd after\ufffd"


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"task_id": "t", "callbackType": "\ud83c"}, "data.callbackType must be one of"),
        ({"task_id": "t", "callbackType": "x" * 5000}, "data.callbackType must be one of"),
        ({"task_id": "t", "callbackType": "complete\x00"}, "data.callbackType must be one of"),
        ({"task_id": "t\x00"}, "data.task_id"),
        ({"task_id": "x" * 5000}, "data.task_id"),
        ({"task_id": "a/b487"}, "data.task_id must not contain '/'"),
        ({"task_id": "../dead487"}, "data.task_id must not contain '/'"),
    ],
)
def test_identifiers_out_of_bounds_are_400(client, data, fragment) -> None:
    response = post(client, json.dumps({"code": 200, "data": data}))
    assert response.status_code == 400 and fragment in response.get_json()["error"]


def test_long_free_text_is_bounded(client, redis_conn) -> None:
    item = {"status": "failed", "title": "T" * 5000, "text": "", "error_message": "e" * 20000}
    body = {"code": 500, "msg": "m" * 20000, "data": {"callbackType": "error", "task_id": "long", "data": [item]}}
    assert post(client, body).status_code == 200
    stored = json.loads(redis_conn.get(event_key(event_id("long", "error"))))
    assert len(stored["lyrics"][0]["title"]) == 500 and stored["lyrics"][0]["title"].endswith("…")
    assert len(stored["message"]) == 5000 and len(stored["lyrics"][0]["error"]) == 5000


any_text = st.text(st.characters(exclude_categories=()))  # lone surrogates and NUL included
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
item_strategy = st.fixed_dictionaries(
    {},
    optional={
        "title": json_values,
        "text": json_values,
        "status": st.sampled_from(["complete", "failed", "error", "odd"]) | json_values,
        "error_message": json_values,
        "errorMessage": json_values,
    },
)
codes = st.sampled_from([200, 400, 500, "200", "--5", "²", "9" * 5000, 200.5]) | json_values
task_ids = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20) | any_text | json_values
data_strategy = st.fixed_dictionaries(
    {"task_id": task_ids},
    optional={
        "callbackType": st.sampled_from(["complete", "error", "COMPLETE"]) | any_text | json_values,
        "data": st.lists(item_strategy, max_size=3) | json_values,
        "lyricsData": st.lists(item_strategy, max_size=3) | json_values,
    },
)
# Mostly the real shape with hostile values (what reaches the store), sometimes anything at all.
callback_strategy = (
    st.fixed_dictionaries({"data": data_strategy}, optional={"code": codes, "msg": any_text | json_values})
    | json_values
)


@settings_(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=callback_strategy)
def test_any_json_gets_200_or_a_4xx(client, body) -> None:
    """Generated JSON of every shape, with lone surrogates and odd numbers: never a 5xx."""
    response = post(client, json.dumps(body))
    assert response.status_code in (200, 400), (response.status_code, response.get_data()[:200])
    assert response.is_json


def test_unauthenticated_mode_opens_the_callback_only(make_settings, redis_conn, sample) -> None:
    app = create_app(make_settings(RELAY_CALLBACK_TOKEN="", RELAY_ALLOW_UNAUTHENTICATED="1", SUNO_API_KEY="k"))
    client = app.test_client()
    assert post(client, sample, token=None).status_code == 200
    assert client.post("/tasks", json={"prompt": "spend credits"}).status_code == 401
    assert client.get("/tasks/anything").status_code == 401


def test_options_and_double_slashes_answer_json_without_redirect(client) -> None:
    options = client.options(PATH)
    assert options.status_code == 200 and options.is_json and "POST" in options.get_json()["allow"]
    doubled = client.get(f"/{PATH}?token={TOKEN}")
    assert doubled.status_code in (404, 405) and doubled.is_json
    assert TOKEN not in doubled.headers.get("Location", "")


def test_a_live_targets_message_id_and_edits_show_on_the_task_page_and_in_the_api(make_settings, redis_conn) -> None:
    import base64

    from relay.store.keys import live_key
    from tests.support import example

    settings = make_settings(
        DISCORD_WEBHOOK_URL="https://discord.com/api/webhooks/1/abcdefgh#stages=live",
        RELAY_DASHBOARD_USER="ops", RELAY_DASHBOARD_PASSWORD="dash-secret",
    )  # fmt: skip
    client = create_app(settings).test_client()
    payload = example("music-text")
    assert client.post("/callbacks/suno/music", json=payload, query_string={"token": TOKEN}).status_code == 200
    task_id = payload["data"]["task_id"]
    redis_conn.hset(live_key(task_id, "discord"), mapping={"message_id": "1234567890123", "rank": 1, "edits": 2})
    status = client.get(f"/tasks/{task_id}", headers={"X-Relay-Token": TOKEN}).get_json()
    shown = status["events"][0]["targets"]["discord"]
    assert (shown["message_id"], shown["edits"]) == ("1234567890123", 2)
    auth = {"Authorization": "Basic " + base64.b64encode(b"ops:dash-secret").decode()}
    page = client.get(f"/ui/tasks/{task_id}", headers=auth)
    assert page.status_code == 200 and "live message 1234567890123 · 2 edits" in page.text
