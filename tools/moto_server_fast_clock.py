"""moto_server with a cheaper clock, for `make soak-queue` only.

moto's SQS asks the time for every message on every call (is it visible? delayed?), and
each ask builds and subtracts datetimes: at a backlog of a few thousand messages one
SendMessageBatch costs most of a second, so a 10,000-event soak would measure moto, not
the function. Here the same value, seconds since the epoch, comes from time.time(). No
queue behaviour changes; the tests keep the stock server.
"""

import sys
import time

import moto.core.utils as utils
import moto.sqs.models as sqs_models

_unix_time = utils.unix_time


def unix_time(dt=None):
    return time.time() if dt is None else _unix_time(dt)


def unix_time_millis(dt=None):
    return unix_time(dt) * 1000.0


for module in (utils, sqs_models):
    module.unix_time = unix_time
    module.unix_time_millis = unix_time_millis

from moto.server import main  # noqa: E402

sys.exit(main())
