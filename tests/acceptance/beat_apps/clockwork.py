"""The failover test's app: a 1-second interval and an every-minute crontab."""

import os

from pgqueue import App, crontab

app = App("clockwork")
# A short leader lease keeps the failover test quick; production's default is 15 s.
app.conf.leader_ttl_seconds = float(os.environ.get("CLOCKWORK_LEADER_TTL", "3"))
app.conf.beat_schedule = {
    "every-second": {"task": "clockwork.tick", "schedule": 1.0, "args": ["second"]},
    "every-minute": {"task": "clockwork.tick", "schedule": crontab(), "args": ["minute"]},
}


@app.task(name="clockwork.tick")
def tick(kind):
    return kind
