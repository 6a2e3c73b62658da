<?php
// A connector's producer in PHP: register a portal (from the app's install event), then confirm
// the delivery of one message, through the worker's broker (Redis or RabbitMQ).
//
//   php producer.php BROKER_URL < payloads.json
//
// payloads.json: {"register": {<portal.register keyword arguments>},
//                 "confirm": [{<delivery.confirm keyword arguments>}, ...]}
// Prints one task id per line. Needs php-cli and php-predis (Redis) or php-amqplib (RabbitMQ):
// Debian's packages, autoloaded from /usr/share/php (with Composer: vendor/autoload.php).

declare(strict_types=1);

require __DIR__ . '/celery_message.php';

/** Send every message to the broker at `$url`; returns their task ids. */
function send_all(string $url, array $messages): array
{
    $scheme = strtolower((string) parse_url($url, PHP_URL_SCHEME));
    if ($scheme === 'redis' || $scheme === 'rediss') {
        require_once 'Predis/autoload.php';
        $redis = new \Predis\Client($url);
        $ids = array_map(fn (array $m) => celery_send_redis($redis, $m), $messages);
        $redis->disconnect();
        return $ids;
    }
    if ($scheme === 'amqp') {
        require_once 'PhpAmqpLib/autoload.php';
        $p = parse_url($url);
        $vhost = isset($p['path']) && $p['path'] !== '/' ? urldecode(substr($p['path'], 1)) : '/';
        $connection = new \PhpAmqpLib\Connection\AMQPStreamConnection(
            $p['host'], $p['port'] ?? 5672, urldecode($p['user'] ?? 'guest'),
            urldecode($p['pass'] ?? 'guest'), $vhost);
        $channel = $connection->channel();
        $channel->confirm_select(); // publisher confirms: returns once RabbitMQ has them
        $ids = array_map(fn (array $m) => celery_send_amqp($channel, $m), $messages);
        $channel->wait_for_pending_acks(10.0);
        $channel->close();
        $connection->close();
        return $ids;
    }
    throw new InvalidArgumentException("unsupported broker URL scheme: {$scheme}");
}

$url = $argv[1] ?? getenv('CELERY_BROKER_URL') ?: 'redis://127.0.0.1:6379/0';
$payloads = json_decode(stream_get_contents(STDIN), true, 64, JSON_THROW_ON_ERROR);
$messages = [celery_message('portal.register', $payloads['register'])];
foreach ($payloads['confirm'] as $confirmation) {
    $messages[] = celery_message('delivery.confirm', $confirmation);
}
foreach (send_all($url, $messages) as $id) {
    echo $id, PHP_EOL;
}
