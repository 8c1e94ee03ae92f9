"""Generated baton.v1 messages, enums and gRPC stubs (do not edit: run clients/generate)."""

from baton.v1.common_pb2 import *  # noqa: F401,F403
from baton.v1.options_pb2 import *  # noqa: F401,F403
from baton.v1.context_pb2 import *  # noqa: F401,F403
from baton.v1.handoff_pb2 import *  # noqa: F401,F403
from baton.v1 import common_pb2, context_pb2, context_pb2_grpc, handoff_pb2, handoff_pb2_grpc, options_pb2  # noqa: F401
