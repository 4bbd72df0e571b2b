"""Joins the demo tenant as a user, prints "joined", then "left <reason>" when the node ends the session."""

import sys

from autobahn.twisted.component import Component, run

url = sys.argv[1]
out = sys.__stdout__  # autobahn's run() redirects sys.stdout into its logger


def say(*words: str) -> None:
    out.write(" ".join(words) + "\n")
    out.flush()


component = Component(
    transports=[{"url": url, "max_retries": 0}],
    realm="demo",
    authentication={"ticket": {"ticket": "demo-watcher", "authextra": {"device_id": "watch"}}},
)


@component.on_join
def joined(session, details):
    say("joined")


@component.on_leave
def left(session, details):
    say("left", details.reason)
    from twisted.internet import reactor

    reactor.callLater(0, reactor.stop)


if __name__ == "__main__":
    run([component], log_level="error")
