const res = await fetch("https://imageapi.org/api/v1/generate", {
method: "POST",
headers: {
"Authorization": "Bearer YOUR_API_KEY",
"Content-Type": "application/json",
},
body: JSON.stringify({
prompt: "a sunset over mountains",
width: 512,
height: 512,
}),
});
const data = await res.json();
