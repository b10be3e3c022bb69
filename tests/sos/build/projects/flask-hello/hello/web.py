import os
import threading

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(service="flask-hello", pid=os.getpid())


@app.get("/threads")
def threads():
    return jsonify(threads=threading.active_count())


@app.get("/healthz")
def healthz():
    return "ok"
