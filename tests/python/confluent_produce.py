"""Produce telemetry events with confluent-kafka's stock AvroSerializer and
a schema Sluice has no file for: the telemetry schema plus an optional
field `region`. The serializer registers it (auto.register.schemas) with the
registry at REGISTRY_URL under TopicNameStrategy (`TOPIC-value`).

usage: confluent_produce.py BOOTSTRAP TOPIC REGISTRY_URL SCHEMA_FILE COUNT
"""
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

bootstrap, topic, registry_url, schema_file, count = sys.argv[1:6]
count = int(count)
schema = json.load(open(schema_file))
schema["fields"].append({"name": "region", "type": ["null", "string"], "default": None,
                         "doc": "Added by a newer producer."})
registry = SchemaRegistryClient({"url": registry_url})
serialize = AvroSerializer(registry, json.dumps(schema), conf={"auto.register.schemas": True})
producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
for i in range(count):
    event = {
        "event_id": f"py-{i:05d}",
        "type": "page_view",
        "source": "python",
        "entity_id": f"user-{i % 7}",
        "occurred_at": 1764400000000 + i,
        "severity": ["INFO", "WARN"][i % 2],
        "attributes": {"seq": str(i)},
        "trace_id": None if i % 2 else f"trace-{i}",
        "region": ["eu", "us"][i % 2],
    }
    value = serialize(event, SerializationContext(topic, MessageField.VALUE))
    producer.produce(topic, key=event["entity_id"], value=value)
    producer.poll(0)
left = producer.flush(30)
if left:
    raise SystemExit(f"{left} records not delivered")
print(f"produced {count} records, schema id {int.from_bytes(value[1:5], 'big')}", file=sys.stderr)
