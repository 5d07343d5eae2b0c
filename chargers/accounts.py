"""Logging in and out: Django's auth views, with "remember me"."""

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpResponse

# Without "remember me" the session ends when the browser closes.
REMEMBER_FOR_S = 30 * 24 * 3600


class LoginForm(AuthenticationForm):
    remember_me = forms.BooleanField(required=False, label="Remember me on this device")


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    redirect_authenticated_user = True

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_valid(form)
        remember = form.cleaned_data.get("remember_me")
        self.request.session.set_expiry(REMEMBER_FOR_S if remember else 0)
        return response


class LogoutView(auth_views.LogoutView):
    """POST only (Django's rule): a link cannot log anybody out."""
