"""The baseline: a bare Flask endpoint that parses the same JSON and answers 200, touching
nothing else. Served by gunicorn with the relay's own gunicorn.conf.py."""

import json

from flask import Flask, Response, request

app = Flask(__name__)


@app.post("/callbacks/suno/lyrics")
def callback() -> Response:
    payload = json.loads(request.get_data())
    return Response(
        json.dumps({"status": "received", "task_id": payload["data"]["task_id"]}), mimetype="application/json"
    )
