<?php
// A Celery task message (protocol v2, JSON) built by hand: there is no PHP Celery client.
// Copy these functions into a connector; they need nothing but PHP's json and random_bytes.
//
//   $message = celery_message('delivery.confirm', $payload);   // headers, properties, body
//   celery_send_redis($predis, $message);                     // LPUSH celery <kombu envelope>
//   celery_send_amqp($channel, $message);                     // php-amqplib, queue `celery`
//
// The worker's tasks take keyword arguments only, so `args` is always empty. The wire format is
// documented in docs/producers-other-languages.md.

declare(strict_types=1);

/** Keys whose values never show in task events (Flower): the worker masks the same ones. */
const CELERY_SECRET_KEYS = ['access_token', 'refresh_token', 'application_token', 'client_secret',
    'auth', 'auth_id', 'refresh_id'];

/** A random UUID (version 4), Celery's task id. */
function celery_uuid(): string
{
    $b = random_bytes(16);
    $b[6] = chr((ord($b[6]) & 0x0f) | 0x40);
    $b[8] = chr((ord($b[8]) & 0x3f) | 0x80);
    return vsprintf('%s%s-%s-%s-%s-%s%s%s', str_split(bin2hex($b), 4));
}

/** `$value` with every secret key's value replaced by `***`, at any depth. */
function celery_masked(mixed $value): mixed
{
    if (!is_array($value)) {
        return $value;
    }
    $out = [];
    foreach ($value as $key => $item) {
        $secret = is_string($key) && in_array(strtolower($key), CELERY_SECRET_KEYS, true);
        $out[$key] = $secret ? '***' : celery_masked($item);
    }
    return $out;
}

/**
 * The task message for `$task` with keyword arguments `$kwargs`, for queue `$queue`:
 * ['headers' => ..., 'properties' => ..., 'body' => the JSON body, 'queue' => ...].
 */
function celery_message(string $task, array $kwargs, string $queue = 'celery'): array
{
    $id = celery_uuid();
    $json = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR;
    // body: [args, kwargs, embed]; an empty PHP array would encode as [], so kwargs is an object
    $body = json_encode([[], (object) $kwargs,
        ['callbacks' => null, 'errbacks' => null, 'chain' => null, 'chord' => null]], $json);
    $headers = [
        'lang' => 'php',
        'task' => $task,
        'id' => $id,
        'shadow' => null,
        'eta' => null,
        'expires' => null,
        'group' => null,
        'group_index' => null,
        'retries' => 0,
        'timelimit' => [null, null],
        'root_id' => $id,
        'parent_id' => null,
        'argsrepr' => '()',
        'kwargsrepr' => json_encode(celery_masked($kwargs), $json),
        'origin' => 'php@' . gethostname(),
        'ignore_result' => true,
    ];
    $properties = [
        'correlation_id' => $id,
        'reply_to' => '',
        'delivery_mode' => 2, // persistent
        'priority' => 0,
    ];
    return ['headers' => $headers, 'properties' => $properties, 'body' => $body,
        'queue' => $queue];
}

/**
 * Redis broker: kombu's envelope (body base64-encoded), pushed on the list named as the queue.
 * kombu's consumers pop from the right, so LPUSH puts the message at the back of the queue.
 */
function celery_send_redis(\Predis\Client $redis, array $message): string
{
    $envelope = [
        'body' => base64_encode($message['body']),
        'content-encoding' => 'utf-8',
        'content-type' => 'application/json',
        'headers' => $message['headers'],
        'properties' => $message['properties'] + [
            'body_encoding' => 'base64',
            'delivery_info' => ['exchange' => '', 'routing_key' => $message['queue']],
            'delivery_tag' => celery_uuid(),
        ],
    ];
    $redis->lpush($message['queue'],
        [json_encode($envelope, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR)]);
    return $message['headers']['id'];
}

/**
 * RabbitMQ: the body as the AMQP body, the headers as AMQP headers, published to the default
 * exchange with the queue's name as routing key. With publisher confirms on the channel
 * (`$channel->confirm_select()`), `wait_for_pending_acks` returns once the broker has it.
 */
function celery_send_amqp(\PhpAmqpLib\Channel\AMQPChannel $channel, array $message): string
{
    $amqp = new \PhpAmqpLib\Message\AMQPMessage($message['body'], [
        'content_type' => 'application/json',
        'content_encoding' => 'utf-8',
        'correlation_id' => $message['properties']['correlation_id'],
        'delivery_mode' => $message['properties']['delivery_mode'],
        'priority' => $message['properties']['priority'],
        'application_headers' => new \PhpAmqpLib\Wire\AMQPTable($message['headers']),
    ]);
    $channel->basic_publish($amqp, '', $message['queue']);
    return $message['headers']['id'];
}
