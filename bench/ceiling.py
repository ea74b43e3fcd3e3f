"""The ingest figure's ceiling: what a durable door can reach on this stack. A minimal Flask
endpoint that parses the same JSON and makes ONE pipelined Redis round trip (SET NX EX of the
event, LPUSH of a job id), answering 200: no token, no validation, no log line, no metrics.
Served by gunicorn with the relay's own gunicorn.conf.py, like the bare endpoint."""

import json
import os
import uuid

import redis
from flask import Flask, Response, request

app = Flask(__name__)
connection = redis.Redis.from_url(os.environ["REDIS_URL"])


@app.post("/callbacks/suno/lyrics")
def callback() -> Response:
    body = request.get_data()
    task_id = json.loads(body)["data"]["task_id"]
    with connection.pipeline(transaction=False) as pipe:
        pipe.set(f"ceiling:{task_id}", body, nx=True, ex=3600)
        pipe.lpush("ceiling:queue", str(uuid.uuid4()))
        fresh, _ = pipe.execute()
    status = "received" if fresh else "duplicate"
    return Response(json.dumps({"status": status, "task_id": task_id}), mimetype="application/json")
