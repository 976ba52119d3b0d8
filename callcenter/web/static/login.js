import { api, setCsrf } from "/static/common.js";

const form = document.getElementById("login-form");
const error = document.getElementById("login-error");
const button = document.getElementById("sign-in");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  button.disabled = true;
  try {
    const session = await api("POST", "/api/session", {
      username: form.username.value,
      password: form.password.value,
    });
    setCsrf(session.csrf_token);
    const supervising = session.role === "supervisor" || session.role === "admin";
    window.location.assign(supervising ? "/wallboard" : "/console");
  } catch (failure) {
    error.textContent = failure.message;
    error.hidden = false;
    form.password.value = "";
    form.password.focus();
  } finally {
    button.disabled = false;
  }
});
