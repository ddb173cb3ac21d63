#!/bin/sh
# One KRaft node: the broker on 0.0.0.0:9092 advertised as redpanda:9092 (the service name
# compose.yaml's gateway containers use), the controller on localhost; settings as in
# localinfra/kafka.py. Storage is formatted on first start only, with a fixed cluster id.
set -eu
DATA=/var/lib/redpanda/data
CONF=/opt/kafka/server.properties
cat > "$CONF" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=PLAINTEXT://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093
advertised.listeners=PLAINTEXT://${KAFKA_ADVERTISED_HOST:-redpanda}:9092
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
if [ ! -f "$DATA/meta.properties" ]; then
  java -cp '/opt/kafka/libs/*' kafka.tools.StorageTool format -t 1jP4vUnfXYeSLzplzeXu_g -c "$CONF"
fi
exec java -Xms256m -Xmx512m -cp '/opt/kafka/libs/*' kafka.Kafka "$CONF"
