<?php
// Stand-ins for the few WordPress functions the seed document's snippet calls, with WordPress's documented
// behaviour (wp_remote_post returns an array with 'response' => ['code' => …] and 'body', or a WP_Error),
// over PHP's own HTTP stream wrapper. The snippet itself runs unmodified on a real PHP interpreter.
class WP_Error {
    private $message;
    public function __construct($code = '', $message = '') { $this->message = $message; }
    public function get_error_message() { return $this->message; }
}

function is_wp_error($thing) { return $thing instanceof WP_Error; }
function wp_json_encode($data) { return json_encode($data); }
function esc_html($text) { return htmlspecialchars($text, ENT_QUOTES, 'UTF-8'); }
function wp_remote_retrieve_response_code($response) { return $response['response']['code']; }
function wp_remote_retrieve_body($response) { return $response['body']; }

function wp_remote_post($url, $args = array()) {
    $headers = '';
    foreach (($args['headers'] ?? array()) as $name => $value) { $headers .= "$name: $value\r\n"; }
    $context = stream_context_create(array('http' => array(
        'method' => 'POST', 'header' => $headers, 'content' => $args['body'] ?? '',
        'timeout' => $args['timeout'] ?? 5, 'ignore_errors' => true,
    )));
    $body = @file_get_contents($url, false, $context);
    if ($body === false) { return new WP_Error('http_request_failed', "could not reach $url"); }
    preg_match('#^HTTP/\S+ (\d{3})#', $http_response_header[0], $status);
    return array('response' => array('code' => (int) $status[1]), 'body' => $body);
}
