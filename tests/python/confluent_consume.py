"""Read Avro records in the Confluent wire format with confluent-kafka's
stock AvroDeserializer and SchemaRegistryClient, and print each value as one
JSON line (timestamps as epoch milliseconds, as Sluice's natural JSON).

usage: confluent_consume.py BOOTSTRAP TOPIC REGISTRY_URL COUNT TIMEOUT_S
"""
import datetime
import json
import sys
import time

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

bootstrap, topic, registry_url, count, timeout = sys.argv[1:6]
count, timeout = int(count), float(timeout)
registry = SchemaRegistryClient({"url": registry_url})
deserialize = AvroDeserializer(registry)
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": f"py-{topic}-{time.time()}",
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
consumer.subscribe([topic])


def plain(value):
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


seen = 0
deadline = time.time() + timeout
while seen < count and time.time() < deadline:
    message = consumer.poll(1.0)
    if message is None:
        continue
    if message.error():
        raise SystemExit(f"consumer error: {message.error()}")
    value = deserialize(message.value(), SerializationContext(topic, MessageField.VALUE))
    print(json.dumps(plain(value), sort_keys=True), flush=True)
    seen += 1
consumer.close()
print(f"decoded {seen} records", file=sys.stderr)
