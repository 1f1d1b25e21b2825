<?php
// define('IMAGEAPI_KEY', 'sk_...'); // in wp-config.php
$response = wp_remote_post('https://imageapi.org/api/v1/generate', array(
'timeout' => 120,
'headers' => array(
'Authorization' => 'Bearer ' . IMAGEAPI_KEY,
'Content-Type' => 'application/json',
),
'body' => wp_json_encode(array(
'prompt' => 'cinematic mountain landscape at sunrise',
'width' => 512,
'height' => 512,
)),
));
if (is_wp_error($response)) {
echo esc_html($response->get_error_message());
} else {
$code = wp_remote_retrieve_response_code($response);
$body = json_decode(wp_remote_retrieve_body($response), true);
// Use $body['data']['image'] (URL or data URL) in your shortcode or template
}
