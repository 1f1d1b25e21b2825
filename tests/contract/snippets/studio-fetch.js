fetch('https://app.apimage.org/api/v1/image-studio', {
method: 'POST',
headers: {
'Authorization': 'Bearer sk_your_key',
'Content-Type': 'application/json'
},
body: JSON.stringify({
prompt: 'A cyberpunk city with flying cars and neon signs',
model: 'flux-2-pro',
aspect_ratio: '16:9'
})
})
.then(res => res.json())
.then(data => console.log(data.image_url));
