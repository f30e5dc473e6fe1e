"""Generated protobuf and gRPC code; regenerate with scripts/gen_protos.py.

Only flame.protocol imports this package.
"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
