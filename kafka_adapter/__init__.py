"""Kafka access shared by the services (api, projections, pipeline, infra): admin-client helpers
(``admin``) and batch consumption (``batches``), with librdkafka's errors in the project's terms.
It imports no other part of the pipeline; the processor's transactional clients stay in
``processors.kafka_clients``."""
