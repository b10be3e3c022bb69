"""Similar items for an item id, from a small fixed table.

Every answer says which revision served it (SOS sets SOS_REVISION), so a traffic split is
visible from the outside: ``curl http://sfix-service.localhost:8080/similar/1``.
"""

import os

from flask import Flask, abort, jsonify

SIMILAR = {
    1: [2, 3, 5],
    2: [1, 3, 8],
    3: [1, 2, 13],
    5: [1, 8, 13],
    8: [2, 5, 13],
    13: [3, 5, 8],
}

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(
        service="sfix-service",
        revision=os.environ.get("SOS_REVISION", "local"),
        log_level=os.environ.get("LOG_LEVEL", "info"),
    )


@app.get("/similar/<int:item_id>")
def similar(item_id: int):
    if item_id not in SIMILAR:
        abort(404, description=f"no item {item_id}")
    return jsonify(
        item=item_id,
        similar=SIMILAR[item_id],
        revision=os.environ.get("SOS_REVISION", "local"),
    )


@app.get("/healthz")
def healthz():
    return "ok"
