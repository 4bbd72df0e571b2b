"""Unit tests import mics modules, which make txaio loggers at import: select Twisted, as the router worker does."""

import txaio

txaio.use_twisted()
