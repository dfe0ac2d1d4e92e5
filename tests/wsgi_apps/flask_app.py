"""A Flask app for the WSGI tests: hello, an echo, a sleeping view, server-sent events."""

import threading
import time

from flask import Flask, Response, request

import microthreads

app = Flask(__name__)
#: /events waits for this between its first and second event (set by the test)
next_event = threading.Event()


@app.route("/")
def index():
    return "hello from flask"


@app.route("/echo", methods=["POST"])
def echo():
    return request.get_data()


@app.route("/sleep")
def sleepy():
    time.sleep(float(request.args.get("seconds", "0.2")))
    return "slept"


@app.route("/events")
def events():
    def stream():
        yield "data: first\n\n"
        deadline = time.monotonic() + 10
        while not next_event.is_set() and time.monotonic() < deadline:
            microthreads.sleep(0.01)
        yield "data: second\n\n"
    return Response(stream(), mimetype="text/event-stream")
