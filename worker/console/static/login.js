// The login page stays a static file: after a wrong key the server answers
// 303 to /console/login?failed=1, and this says so in the alert element.
const failed = new URLSearchParams(window.location.search).get("failed") === "1";
if (failed) {
  const box = document.getElementById("login-error");
  box.textContent = "Wrong key";
  box.hidden = false;
}
document.getElementById("key").focus();
