"""Send log records to Sluice with the OpenTelemetry Python SDK's OTLP/HTTP
log exporter (protobuf, gzip-compressed), through Python's logging module.

usage: otlp_logs.py ENDPOINT COUNT
"""
import logging
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

endpoint, count = sys.argv[1], int(sys.argv[2])
provider = LoggerProvider(resource=Resource.create({"service.name": "checkout", "deployment.environment": "test"}))
exporter = OTLPLogExporter(endpoint=endpoint, compression=Compression.Gzip, timeout=30)
provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_export_batch_size=200))
handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
log = logging.getLogger("shop.checkout")
log.setLevel(logging.DEBUG)
log.addHandler(handler)
log.propagate = False
levels = [log.debug, log.info, log.warning, log.error]
for i in range(count):
    levels[i % 4]("order %d processed", i, extra={"entity.id": f"order-{i % 25}", "seq": i})
provider.force_flush()
provider.shutdown()
print(f"sent {count} log records", file=sys.stderr)
