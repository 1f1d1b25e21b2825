from engine.data.tables import User
from tests.api.helpers import SMALL, set_user
from tests.conftest import make_user


def generate(client, headers, prompt="a cat", **extra):
    response = client.post("/api/v1/generate", json={"prompt": prompt, "model": "tiny-sd", **SMALL, **extra},
                           headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_storage_off_on_the_free_plan(client, auth):
    data = generate(client, auth)
    assert data["image"].startswith("data:image/png;base64,")
    assert data["storage"] == {"enabled": False, "stored": False, "plan": "No cloud storage",
                               "plan_slug": "free"}
    assert client.get("/api/v1/images", headers=auth).json()["data"]["total"] == 0


def test_storage_on_gives_a_hosted_url(client, pro_auth):
    data = generate(client, pro_auth)
    assert data["image_url"].startswith("http://testserver/api/v1/images/" + data["id"])
    assert data["image"] == data["image_url"] and data["storage"]["stored"] is True
    png = client.get(f"/api/v1/images/{data['id']}", headers=pro_auth)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_admin_switch_and_user_preference_turn_storage_off(client, pro_auth, engine):
    engine.runtime.set("storage_enabled", False)
    data = generate(client, pro_auth)
    assert data["storage"] == {"enabled": False, "stored": False, "plan": "5 GB cloud storage", "plan_slug": "pro"}
    engine.runtime.set("storage_enabled", True)
    from sqlmodel import select

    from engine.data.db import session_scope
    with session_scope(engine.db) as session:
        pat = session.exec(select(User).where(User.email == "pat@example.com")).one()
    set_user(engine, pat, preferences={"storage": False})
    data = generate(client, pro_auth)
    assert data["storage"] == {"enabled": True, "stored": False, "plan": "5 GB cloud storage", "plan_slug": "pro"}


def test_only_the_owner_or_a_signed_link_reads_an_image(client, pro_auth, engine):
    data = generate(client, pro_auth)
    _, other_key = make_user(engine, "eve@example.com", plan="pro")
    other = {"Authorization": f"Bearer {other_key}"}
    path = f"/api/v1/images/{data['id']}"
    assert client.get(path, headers=other).status_code == 404
    assert client.get(path + "/info", headers=other).status_code == 404
    assert client.delete(path, headers=other).status_code == 404
    assert client.get(path).status_code == 401
    signed = data["image_url"].replace("http://testserver", "")
    assert client.get(signed).status_code == 200
    forged = signed[:-4] + ("0000" if not signed.endswith("0000") else "1111")
    assert client.get(forged).status_code == 404
    expired = path + "?expires=1&signature=" + signed.split("signature=")[1]
    assert client.get(expired).status_code == 404
    assert client.get(path, headers=pro_auth).status_code == 200  # nothing lost


def test_list_filter_info_and_delete(client, pro_auth, engine):
    cat = generate(client, pro_auth, "a cat on a sofa")
    generate(client, pro_auth, "a dog in the park")
    generate(client, pro_auth, "a fox", model="tiny-flux")
    listing = client.get("/api/v1/images", headers=pro_auth).json()["data"]
    assert listing["total"] == 3 and [i["prompt"] for i in listing["images"]][0] == "a fox"
    assert client.get("/api/v1/images?q=CAT", headers=pro_auth).json()["data"]["total"] == 1
    assert client.get("/api/v1/images?model=tiny-flux", headers=pro_auth).json()["data"]["total"] == 1
    assert client.get("/api/v1/images?q=%25", headers=pro_auth).json()["data"]["total"] == 0
    page = client.get("/api/v1/images?limit=2&offset=2", headers=pro_auth).json()["data"]
    assert len(page["images"]) == 1
    info = client.get(f"/api/v1/images/{cat['id']}/info", headers=pro_auth).json()["data"]
    assert info["metadata"]["prompt"] == "a cat on a sofa" and info["seed"] == cat["seed"]
    assert "file_path" not in info and "user_id" not in info
    assert client.delete(f"/api/v1/images/{cat['id']}", headers=pro_auth).json()["data"]["deleted"] is True
    assert client.get(f"/api/v1/images/{cat['id']}", headers=pro_auth).status_code == 404
    assert client.get("/api/v1/images", headers=pro_auth).json()["data"]["total"] == 2
    assert client.get("/api/v1/images?limit=0", headers=pro_auth).status_code == 422


def test_full_storage_quota_falls_back_to_a_data_url(client, pro_auth, engine):
    from sqlmodel import select

    from engine.data.db import session_scope
    from engine.data.tables import Plan
    with session_scope(engine.db) as session:
        pro = session.exec(select(Plan).where(Plan.slug == "pro")).one()
        pro.storage_quota_mb = 0
        session.add(pro)
        session.commit()
    data = generate(client, pro_auth)
    assert data["image"].startswith("data:image/png;base64,")
    assert data["storage"] == {"enabled": True, "stored": False, "plan": "0 MB cloud storage", "plan_slug": "pro",
                               "reason": "storage quota is full"}
